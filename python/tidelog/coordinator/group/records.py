"""The records of `__consumer_offsets`, in Kafka's own key and value formats.

Keys and values are Kafka's "coordinator records" (apache/kafka `group-coordinator` message
schemas): a big-endian int16 version, then the fields. The key's version says what the record is:

- 0 or 1: an offset commit, key {group, topic, partition}; value `OffsetCommitValue`
  (v0: offset, metadata, commit time; v1 adds an expire time; v3 adds the leader epoch before
  the metadata). Kafka writes key v1 with value v3 (v1 when an expire time was asked for).
- 2: a group's metadata, key {group}; value `GroupMetadataValue` v3 (protocol type, generation,
  protocol, leader, state time, members with subscription and assignment).

A null value is a tombstone: the offset, or the whole group, is gone. Kafka's
`kafka-dump-log --offsets-decoder` reads what this module writes (a test checks it).
Only the non-flexible versions are written; flexible ones (value v4+) are read as well.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field

from tidelog import limits
from tidelog.coordinator.record_reader import INT64, CoordinatorRecordError, RecordReader
from tidelog.protocol.wire import Encoder

OFFSET_COMMIT_KEY_VERSIONS = (0, 1)
GROUP_METADATA_KEY_VERSION = 2
OFFSET_COMMIT_KEY_WRITTEN = 1
OFFSET_COMMIT_VALUE_WRITTEN = 3
OFFSET_COMMIT_VALUE_WITH_EXPIRY = 1
GROUP_METADATA_VALUE_WRITTEN = 3
FIRST_FLEXIBLE_OFFSET_VALUE = 4
FIRST_FLEXIBLE_GROUP_VALUE = 4
NO_LEADER_EPOCH = -1
NO_PRODUCER_ID = -1
NO_TIMESTAMP = -1

# version, offset, leader epoch, metadata length: the head of an OffsetCommitValue v3.
OFFSET_VALUE_V3_HEAD = struct.Struct(">hqih")


@dataclass(frozen=True, slots=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupKey:
    group: str


@dataclass(frozen=True, slots=True)
class OffsetAndMetadata:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int
    expire_timestamp_ms: int = NO_TIMESTAMP


@dataclass(frozen=True, slots=True)
class StoredMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class StoredGroup:
    """What a GroupMetadata record holds: a group's last completed generation."""

    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    state_timestamp_ms: int
    members: tuple[StoredMember, ...] = field(default=())


# ---- writing ------------------------------------------------------------------------------


def _encoder() -> Encoder:
    return Encoder(flexible=False)  # the versions written are all non-flexible


def offset_key(key: OffsetKey) -> bytes:
    out = _encoder()
    out.int16(OFFSET_COMMIT_KEY_WRITTEN)
    out.string(key.group)
    out.string(key.topic)
    out.int32(key.partition)
    return out.to_bytes()


def group_key(key: GroupKey) -> bytes:
    out = _encoder()
    out.int16(GROUP_METADATA_KEY_VERSION)
    out.string(key.group)
    return out.to_bytes()


def offset_value(value: OffsetAndMetadata) -> bytes:
    out = _encoder()
    if value.expire_timestamp_ms != NO_TIMESTAMP:
        out.int16(OFFSET_COMMIT_VALUE_WITH_EXPIRY)
        out.int64(value.offset)
        out.string(value.metadata)
        out.int64(value.commit_timestamp_ms)
        out.int64(value.expire_timestamp_ms)
        return out.to_bytes()
    out.int16(OFFSET_COMMIT_VALUE_WRITTEN)
    out.int64(value.offset)
    out.int32(value.leader_epoch)
    out.string(value.metadata)
    out.int64(value.commit_timestamp_ms)
    return out.to_bytes()


def group_value(value: StoredGroup) -> bytes:
    out = _encoder()
    out.int16(GROUP_METADATA_VALUE_WRITTEN)
    out.string(value.protocol_type)
    out.int32(value.generation)
    out.string(value.protocol)
    out.string(value.leader)
    out.int64(value.state_timestamp_ms)
    out.array_length(len(value.members))
    for member in value.members:
        out.string(member.member_id)
        out.string(member.group_instance_id)
        out.string(member.client_id)
        out.string(member.client_host)
        out.int32(member.rebalance_timeout_ms)
        out.int32(member.session_timeout_ms)
        out.bytes_(member.subscription)
        out.bytes_(member.assignment)
    return out.to_bytes()


# ---- reading ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=limits.COORDINATOR_KEY_CACHE_SIZE)
def parse_key(data: bytes) -> OffsetKey | GroupKey | None:
    """The key of a `__consumer_offsets` record; None for record types tidelog does not keep
    (KIP-848 and share-group records, which a Kafka 4 broker could have written).

    Cached: a reload meets the same few keys over and over (one per group and partition)."""
    reader = RecordReader(data)
    version = reader.int16()
    if version in OFFSET_COMMIT_KEY_VERSIONS:
        return OffsetKey(reader.required_string(), reader.required_string(), reader.int32())
    if version == GROUP_METADATA_KEY_VERSION:
        return GroupKey(reader.required_string())
    return None


def parse_offset_value(data: bytes | memoryview) -> OffsetAndMetadata:
    # The value Kafka and tidelog write, v3 with metadata as a plain string, read without the
    # general reader: a reload decodes one per commit ever made.
    if len(data) >= OFFSET_VALUE_V3_HEAD.size + 8:
        version, offset, leader_epoch, length = OFFSET_VALUE_V3_HEAD.unpack_from(data, 0)
        end = OFFSET_VALUE_V3_HEAD.size + max(length, 0)
        if version == OFFSET_COMMIT_VALUE_WRITTEN and end + 8 == len(data):
            try:
                metadata = bytes(data[OFFSET_VALUE_V3_HEAD.size : end]).decode()
            except UnicodeDecodeError as error:
                raise CoordinatorRecordError(f"metadata is not UTF-8: {error}") from None
            return OffsetAndMetadata(offset, leader_epoch, metadata, INT64.unpack_from(data, end)[0])
    reader = RecordReader(data)
    version = reader.int16()
    reader.flexible = version >= FIRST_FLEXIBLE_OFFSET_VALUE
    offset = reader.int64()
    leader_epoch = reader.int32() if version >= 3 else NO_LEADER_EPOCH
    metadata = reader.string() or ""
    commit_timestamp = reader.int64()
    expire_timestamp = reader.int64() if version == 1 else NO_TIMESTAMP
    reader.skip_tagged_fields()
    return OffsetAndMetadata(offset, leader_epoch, metadata, commit_timestamp, expire_timestamp)


def parse_group_value(data: bytes | memoryview) -> StoredGroup:
    reader = RecordReader(data)
    version = reader.int16()
    reader.flexible = version >= FIRST_FLEXIBLE_GROUP_VALUE
    protocol_type = reader.required_string()
    generation = reader.int32()
    protocol = reader.string()
    leader = reader.string()
    state_timestamp = reader.int64() if version >= 2 else NO_TIMESTAMP
    members = []
    for _ in range(reader.array_length()):
        member_id = reader.required_string()
        instance_id = reader.string() if version >= 3 else None
        client_id = reader.required_string()
        client_host = reader.required_string()
        rebalance_timeout = reader.int32() if version >= 1 else None
        session_timeout = reader.int32()
        if rebalance_timeout is None:  # v0 had one timeout for both
            rebalance_timeout = session_timeout
        subscription = reader.bytes_()
        assignment = reader.bytes_()
        reader.skip_tagged_fields()
        members.append(
            StoredMember(
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout,
                session_timeout,
                subscription,
                assignment,
            )
        )
    reader.skip_tagged_fields()
    return StoredGroup(protocol_type, generation, protocol, leader, state_timestamp, tuple(members))


def java_string_hash(text: str) -> int:
    """Java's `String.hashCode` (over UTF-16 code units), as a signed 32-bit int."""
    value = 0
    utf16 = text.encode("utf-16-be")
    for i in range(0, len(utf16), 2):
        value = (31 * value + (utf16[i] << 8 | utf16[i + 1])) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def partition_for(group: str, partitions: int) -> int:
    """Kafka's `__consumer_offsets` partition for a group: abs(hashCode) mod count, with
    Kafka's `Utils.abs` that maps Integer.MIN_VALUE to 0."""
    hash_code = java_string_hash(group)
    return (0 if hash_code == -(1 << 31) else abs(hash_code)) % partitions
