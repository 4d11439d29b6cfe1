"""The APIs tidelog implements, the versions it advertises, and their kio message classes.

kio (Kafka's message schemas as Python dataclasses, with a native decoder) decodes every
request and encodes the responses that are not on the hot path; `produce.py` and `fetch.py`
encode the hot ones by hand, checked byte for byte against kio in the tests.
"""

from __future__ import annotations

import enum
import functools
import io
from typing import Any

import kio.index
import kio.serial
import kio.serial.errors

from tidelog.protocol import length_guard


class ApiKey(enum.IntEnum):
    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    ADD_PARTITIONS_TO_TXN = 24
    ADD_OFFSETS_TO_TXN = 25
    END_TXN = 26
    WRITE_TXN_MARKERS = 27
    TXN_OFFSET_COMMIT = 28
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    INCREMENTAL_ALTER_CONFIGS = 44
    OFFSET_DELETE = 47
    DESCRIBE_CLUSTER = 60
    DESCRIBE_PRODUCERS = 61
    DESCRIBE_TRANSACTIONS = 65
    LIST_TRANSACTIONS = 66
    CONSUMER_GROUP_DESCRIBE = 69
    OFFSET_FOR_LEADER_EPOCH = 23
    DESCRIBE_LOG_DIRS = 35
    ELECT_LEADERS = 43


# Advertised (min, max). Produce advertises 0 as Kafka 4 does (librdkafka 2.0 stops
# compressing otherwise) but v0-2 requests are refused; kio has no schema for them.
SUPPORTED_VERSIONS: dict[ApiKey, tuple[int, int]] = {
    ApiKey.PRODUCE: (0, 12),
    ApiKey.FETCH: (4, 16),
    ApiKey.LIST_OFFSETS: (1, 10),
    ApiKey.METADATA: (0, 13),
    # Group APIs: Kafka 4's ranges, up to the last version without KIP-848 topic ids.
    ApiKey.OFFSET_COMMIT: (2, 9),
    ApiKey.OFFSET_FETCH: (1, 9),
    ApiKey.FIND_COORDINATOR: (0, 6),
    ApiKey.JOIN_GROUP: (0, 9),
    ApiKey.HEARTBEAT: (0, 4),
    ApiKey.LEAVE_GROUP: (0, 5),
    ApiKey.SYNC_GROUP: (0, 5),
    ApiKey.DESCRIBE_GROUPS: (0, 6),
    ApiKey.LIST_GROUPS: (0, 5),
    ApiKey.API_VERSIONS: (0, 4),
    ApiKey.CREATE_TOPICS: (2, 7),
    ApiKey.DELETE_TOPICS: (1, 6),
    ApiKey.DELETE_RECORDS: (0, 2),
    # 0-5: every version clients send (librdkafka 0-4, kafka-python up to 4, aiokafka 0, Java 5).
    ApiKey.INIT_PRODUCER_ID: (0, 5),
    ApiKey.DESCRIBE_CONFIGS: (1, 4),
    ApiKey.ALTER_CONFIGS: (0, 2),
    ApiKey.CREATE_PARTITIONS: (0, 3),
    ApiKey.DELETE_GROUPS: (0, 2),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
    ApiKey.OFFSET_DELETE: (0, 0),
    ApiKey.DESCRIBE_CLUSTER: (0, 2),
    ApiKey.DESCRIBE_PRODUCERS: (0, 0),
    # Transactions. AddPartitionsToTxn v4+ is Kafka's batched broker form, answered too. Produce
    # v12, EndTxn v5 and TxnOffsetCommit v5 are TV2's (KIP-890 part 2): advertised only with
    # the transaction.version feature (`advertised`).
    ApiKey.ADD_PARTITIONS_TO_TXN: (0, 5),
    ApiKey.ADD_OFFSETS_TO_TXN: (0, 4),
    ApiKey.END_TXN: (0, 5),
    ApiKey.TXN_OFFSET_COMMIT: (0, 5),
    # Transaction admin (KIP-664): `kafka-transactions.sh` list, describe, find-hanging, abort.
    # WriteTxnMarkers v0 was removed in Kafka 4.0.
    ApiKey.WRITE_TXN_MARKERS: (1, 2),
    ApiKey.DESCRIBE_TRANSACTIONS: (0, 0),
    ApiKey.LIST_TRANSACTIONS: (0, 2),
    # Answered GROUP_ID_NOT_FOUND for every group (only classic groups exist), so that
    # Java's admin client and librdkafka fall back to DescribeGroups.
    ApiKey.CONSUMER_GROUP_DESCRIBE: (0, 1),
    # Kafka 4's ranges (v0-1 of OffsetForLeaderEpoch and v0 of DescribeLogDirs were removed in 4.0).
    ApiKey.OFFSET_FOR_LEADER_EPOCH: (2, 4),
    ApiKey.DESCRIBE_LOG_DIRS: (1, 4),
    ApiKey.ELECT_LEADERS: (0, 2),
}
PRODUCE_VERSION_MIN_ACCEPTED = 3
# The highest versions without TV2's rules, advertised when transaction.version is below 2.
TV1_MAX_VERSIONS = {ApiKey.PRODUCE: 11, ApiKey.END_TXN: 4, ApiKey.TXN_OFFSET_COMMIT: 4}
TRANSACTION_VERSION_FEATURE = "transaction.version"
TRANSACTION_VERSION_MAX = 2


def advertised(transaction_version: int) -> dict[ApiKey, tuple[int, int]]:
    """The ApiVersions table for a finalized transaction.version: TV2's versions only at 2
    (Kafka's clients pick TV2 from the feature, and use those versions then)."""
    if transaction_version >= TRANSACTION_VERSION_MAX:
        return SUPPORTED_VERSIONS
    return {key: (low, min(high, TV1_MAX_VERSIONS.get(key, high))) for key, (low, high) in SUPPORTED_VERSIONS.items()}


def is_supported(api_key: int, version: int) -> bool:
    if api_key not in SUPPORTED_VERSIONS:
        return False
    low, high = SUPPORTED_VERSIONS[ApiKey(api_key)]
    if api_key == ApiKey.PRODUCE:
        low = PRODUCE_VERSION_MIN_ACCEPTED
    return low <= version <= high


@functools.cache
def request_class(api_key: int, version: int) -> Any:
    return kio.index.load_request_schema(api_key, version)


@functools.cache
def response_class(api_key: int, version: int) -> Any:
    return kio.index.load_response_schema(api_key, version)


@functools.cache
def is_flexible(api_key: int, version: int) -> bool:
    return bool(request_class(api_key, version).__flexible__)


def response_is_flexible(api_key: int, version: int) -> bool:
    """Whether the response header is v1. ApiVersions always answers with header v0."""
    return api_key != ApiKey.API_VERSIONS and is_flexible(api_key, version)


@functools.cache
def _reader(api_key: int, version: int) -> Any:
    return kio.serial.entity_reader(request_class(api_key, version))


@functools.cache
def _writer(api_key: int, version: int) -> Any:
    return kio.serial.entity_writer(response_class(api_key, version))


def decode_request(api_key: int, version: int, frame: bytes, body_offset: int) -> Any:
    """The request body as a kio dataclass. Raises kio.serial.errors.SerialError if malformed."""
    length_guard.check_lengths(request_class(api_key, version), frame, body_offset)
    try:
        message, _ = _reader(api_key, version)(frame, body_offset)
    except KeyError as error:  # kio's reader on a tagged field its schema does not have
        raise kio.serial.errors.DecodeError(f"unknown tagged field in the body: {error}") from None
    return message


def encode_response(api_key: int, version: int, response: Any) -> bytes:
    out = io.BytesIO()
    _writer(api_key, version)(out, response)
    return out.getvalue()


__all__ = [
    "ApiKey",
    "SUPPORTED_VERSIONS",
    "decode_request",
    "encode_response",
    "is_flexible",
    "is_supported",
    "request_class",
    "response_class",
    "response_is_flexible",
]
