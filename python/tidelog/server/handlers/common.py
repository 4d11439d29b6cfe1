"""What several handlers share: storage errors as Kafka error codes, and time conversions."""

from __future__ import annotations

import contextvars
import datetime
import uuid

from kio.schema.errors import ErrorCode

from tidelog.storage import (
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
    UnsupportedMagicError,
)

NO_THROTTLE = datetime.timedelta(0)
# What Kafka answers as the topic id of a topic it does not know.
ZERO_UUID = uuid.UUID(int=0)


# The peer of the connection a request came on, as Kafka shows it ("/127.0.0.1"); set by the
# connection before it calls a handler, so a handler's task sees its own request's value.
CLIENT_HOST: contextvars.ContextVar[str] = contextvars.ContextVar("client_host", default="")


def timedelta_ms(value: datetime.timedelta | int) -> int:
    """kio's form of an int32/int64 millisecond field is a timedelta."""
    if isinstance(value, datetime.timedelta):
        return int(value.total_seconds() * 1000)
    return int(value)


class CloseConnection(Exception):
    """Raised by a handler when Kafka would close the connection (acks=0 produce failures)."""


# Kafka's "not requested" value for authorized-operation bit sets.
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)

STORAGE_ERRORS: dict[type[StorageError], ErrorCode] = {
    CorruptRecordError: ErrorCode.corrupt_message,
    InvalidRecordError: ErrorCode.invalid_record,
    UnsupportedMagicError: ErrorCode.invalid_record,
    InvalidTimestampError: ErrorCode.invalid_timestamp,
    RecordTooLargeError: ErrorCode.message_too_large,
    RecordListTooLargeError: ErrorCode.record_list_too_large,
    OffsetOutOfRangeError: ErrorCode.offset_out_of_range,
    CorruptLogError: ErrorCode.kafka_storage_error,
    LogClosedError: ErrorCode.not_leader_or_follower,
    StorageIOError: ErrorCode.kafka_storage_error,
    InvalidProducerEpochError: ErrorCode.invalid_producer_epoch,
    OutOfOrderSequenceError: ErrorCode.out_of_order_sequence_number,
    InvalidTxnStateError: ErrorCode.invalid_txn_state,
}


def error_code_for(error: StorageError) -> ErrorCode:
    return STORAGE_ERRORS.get(type(error), ErrorCode.kafka_storage_error)


def datetime_from_ms(ms: int) -> datetime.datetime | None:
    """kio's form of an int64 timestamp field: None stands for -1."""
    if ms < 0:
        return None
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
