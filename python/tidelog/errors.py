"""Errors as Kafka names them, for the embedded API and the core.

`KafkaError` carries a Kafka error code (`error_code`, a kio `ErrorCode`) and a message;
`KafkaError.of(code, message)` gives the subclass named after the code where there is one, so
callers can catch `UnknownTopicOrPartitionError` or test `error.error_code`. Wrong argument
types and values are Python's own `TypeError` / `ValueError`.
"""

from __future__ import annotations

from typing import ClassVar

from kio.schema.errors import ErrorCode

__all__ = [
    "ClosedError",
    "ConcurrentTransactionsError",
    "CoordinatorLoadInProgressError",
    "CorruptRecordError",
    "ErrorCode",
    "IllegalGenerationError",
    "InvalidConfigError",
    "InvalidPartitionsError",
    "InvalidProducerEpochError",
    "InvalidRecordError",
    "InvalidReplicaAssignmentError",
    "InvalidReplicationFactorError",
    "InvalidRequestError",
    "InvalidTimestampError",
    "InvalidTopicError",
    "InvalidTxnStateError",
    "KafkaError",
    "KafkaStorageError",
    "NotCoordinatorError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "RebalanceInProgressError",
    "RecordListTooLargeError",
    "RecordTooLargeError",
    "TidelogError",
    "TopicAlreadyExistsError",
    "UnknownMemberIdError",
    "UnknownTopicOrPartitionError",
]


class TidelogError(Exception):
    """Base of every error tidelog raises on purpose."""


class ClosedError(TidelogError):
    """The log (or broker) was closed; nothing more can be done with it."""


class KafkaError(TidelogError):
    """A refusal with a Kafka error code, as a Kafka client would receive it."""

    error_code: ErrorCode = ErrorCode.unknown_server_error
    _by_code: ClassVar[dict[ErrorCode, type[KafkaError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        KafkaError._by_code[cls.error_code] = cls

    def __init__(self, message: str | None = None, error_code: ErrorCode | None = None) -> None:
        if error_code is not None:
            self.error_code = error_code
        self.message = message
        super().__init__(f"{self.name}: {message}" if message else self.name)

    @property
    def name(self) -> str:
        """Kafka's name of the error, e.g. UNKNOWN_TOPIC_OR_PARTITION."""
        return self.error_code.name.upper()

    @property
    def retriable(self) -> bool:
        return bool(self.error_code.retriable)

    @staticmethod
    def of(error_code: ErrorCode, message: str | None = None) -> KafkaError:
        """The error for `error_code`: its own subclass where there is one."""
        cls = KafkaError._by_code.get(error_code)
        return cls(message) if cls is not None else KafkaError(message, error_code)


class UnknownTopicOrPartitionError(KafkaError):
    error_code = ErrorCode.unknown_topic_or_partition


class TopicAlreadyExistsError(KafkaError):
    error_code = ErrorCode.topic_already_exists


class InvalidTopicError(KafkaError):
    error_code = ErrorCode.invalid_topic_exception


class InvalidPartitionsError(KafkaError):
    error_code = ErrorCode.invalid_partitions


class InvalidReplicationFactorError(KafkaError):
    error_code = ErrorCode.invalid_replication_factor


class InvalidReplicaAssignmentError(KafkaError):
    error_code = ErrorCode.invalid_replica_assignment


class InvalidConfigError(KafkaError):
    error_code = ErrorCode.invalid_config


class InvalidRequestError(KafkaError):
    error_code = ErrorCode.invalid_request


class InvalidRecordError(KafkaError):
    error_code = ErrorCode.invalid_record


class CorruptRecordError(KafkaError):
    error_code = ErrorCode.corrupt_message


class RecordTooLargeError(KafkaError):
    error_code = ErrorCode.message_too_large


class RecordListTooLargeError(KafkaError):
    error_code = ErrorCode.record_list_too_large


class InvalidTimestampError(KafkaError):
    error_code = ErrorCode.invalid_timestamp


class OffsetOutOfRangeError(KafkaError):
    error_code = ErrorCode.offset_out_of_range


class OutOfOrderSequenceError(KafkaError):
    error_code = ErrorCode.out_of_order_sequence_number


class InvalidProducerEpochError(KafkaError):
    error_code = ErrorCode.invalid_producer_epoch


class InvalidTxnStateError(KafkaError):
    error_code = ErrorCode.invalid_txn_state


class ConcurrentTransactionsError(KafkaError):
    error_code = ErrorCode.concurrent_transactions


class KafkaStorageError(KafkaError):
    error_code = ErrorCode.kafka_storage_error


class NotCoordinatorError(KafkaError):
    error_code = ErrorCode.not_coordinator


class CoordinatorLoadInProgressError(KafkaError):
    error_code = ErrorCode.coordinator_load_in_progress


class IllegalGenerationError(KafkaError):
    error_code = ErrorCode.illegal_generation


class UnknownMemberIdError(KafkaError):
    error_code = ErrorCode.unknown_member_id


class RebalanceInProgressError(KafkaError):
    error_code = ErrorCode.rebalance_in_progress
