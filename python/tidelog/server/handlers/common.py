"""What several handlers share: time conversions, the client's address, closing on error."""

from __future__ import annotations

import contextvars
import datetime
import uuid

from kio.schema.errors import ErrorCode

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


# A non-nullable int64 timestamp field holding Kafka's "none", -1 (kio writes round(ms)).
NO_TIMESTAMP = datetime.datetime.fromtimestamp(-0.001, tz=datetime.UTC)


def datetime_from_ms(ms: int) -> datetime.datetime | None:
    """kio's form of an int64 timestamp field: None stands for -1."""
    if ms < 0:
        return None
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)


def fenced_error(error: ErrorCode, version: int, producer_fenced_min_version: int) -> ErrorCode:
    """Kafka answers PRODUCER_FENCED only from the version that knows it (KIP-588); older
    versions get INVALID_PRODUCER_EPOCH."""
    if error == ErrorCode.producer_fenced and version < producer_fenced_min_version:
        return ErrorCode.invalid_producer_epoch
    return error
