"""Storage errors as the Kafka error codes clients are answered with."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from tidelog.storage import (
    CorruptBatchError,
    CorruptLogError,
    CorruptRecordError,
    InvalidProducerEpochError,
    InvalidRecordError,
    InvalidTimestampError,
    InvalidTxnStateError,
    LogClosedError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    RecordListTooLargeError,
    RecordTooLargeError,
    StorageError,
    StorageIOError,
    TransactionCoordinatorFencedError,
    UnsupportedMagicError,
)

STORAGE_ERRORS: dict[type[StorageError], ErrorCode] = {
    CorruptRecordError: ErrorCode.corrupt_message,
    InvalidRecordError: ErrorCode.invalid_record,
    UnsupportedMagicError: ErrorCode.invalid_record,
    InvalidTimestampError: ErrorCode.invalid_timestamp,
    RecordTooLargeError: ErrorCode.message_too_large,
    RecordListTooLargeError: ErrorCode.record_list_too_large,
    OffsetOutOfRangeError: ErrorCode.offset_out_of_range,
    CorruptLogError: ErrorCode.kafka_storage_error,
    CorruptBatchError: ErrorCode.kafka_storage_error,
    LogClosedError: ErrorCode.not_leader_or_follower,
    StorageIOError: ErrorCode.kafka_storage_error,
    InvalidProducerEpochError: ErrorCode.invalid_producer_epoch,
    OutOfOrderSequenceError: ErrorCode.out_of_order_sequence_number,
    InvalidTxnStateError: ErrorCode.invalid_txn_state,
    TransactionCoordinatorFencedError: ErrorCode.transaction_coordinator_fenced,
}


def error_code_for(error: StorageError) -> ErrorCode:
    return STORAGE_ERRORS.get(type(error), ErrorCode.kafka_storage_error)
