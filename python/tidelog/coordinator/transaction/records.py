"""The records of `__transaction_state`, in Kafka's key and value formats.

After apache/kafka `transaction-coordinator` message schemas `TransactionLogKey` (version 0:
the transactional id) and `TransactionLogValue` (version 0; version 1 is flexible and adds the
tagged fields PreviousProducerId (tag 0), NextProducerId (tag 1) and ClientTransactionVersion
(tag 2)). tidelog writes version 1, which `kafka-dump-log --transaction-log-decoder` reads. A null
value is a tombstone: the transactional id expired.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tidelog.coordinator.record_reader import CoordinatorRecordError, RecordReader
from tidelog.protocol.wire import Encoder, uvarint

KEY_VERSION = 0
VALUE_VERSION_WRITTEN = 1
FIRST_FLEXIBLE_VALUE = 1
NO_PRODUCER_ID = -1
TAG_PREVIOUS_PRODUCER_ID = 0
TAG_NEXT_PRODUCER_ID = 1
TAG_CLIENT_TRANSACTION_VERSION = 2


class TxnState(enum.IntEnum):
    """Kafka's transaction states, with the ids the log stores."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def kafka_name(self) -> str:
        """The name DescribeTransactions and ListTransactions answer."""
        return "".join(part.capitalize() for part in self.name.split("_"))


# The states each state may be entered from (Kafka's `TransactionState.validPreviousStates`).
VALID_PREVIOUS: dict[TxnState, frozenset[TxnState]] = {
    TxnState.EMPTY: frozenset({TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT}),
    TxnState.ONGOING: frozenset({TxnState.ONGOING, TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT}),
    TxnState.PREPARE_COMMIT: frozenset({TxnState.ONGOING}),
    TxnState.PREPARE_ABORT: frozenset({TxnState.ONGOING, TxnState.PREPARE_EPOCH_FENCE}),
    TxnState.COMPLETE_COMMIT: frozenset({TxnState.PREPARE_COMMIT}),
    TxnState.COMPLETE_ABORT: frozenset({TxnState.PREPARE_ABORT}),
    TxnState.DEAD: frozenset({TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT}),
    TxnState.PREPARE_EPOCH_FENCE: frozenset({TxnState.ONGOING}),
}


@dataclass(frozen=True, slots=True)
class StoredTransaction:
    """What a TransactionLogValue holds: one transactional id's durable state."""

    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState
    # (topic, partition) pairs; empty in Empty and Complete* states.
    partitions: frozenset[tuple[str, int]]
    last_update_ms: int
    start_ms: int
    previous_producer_id: int = NO_PRODUCER_ID
    next_producer_id: int = NO_PRODUCER_ID
    client_transaction_version: int = 0


def key_bytes(transactional_id: str) -> bytes:
    out = Encoder(flexible=False)
    out.int16(KEY_VERSION)
    out.string(transactional_id)
    return out.to_bytes()


def _tag(out: Encoder, tag: int, payload: bytes) -> None:
    out.raw(uvarint(tag) + uvarint(len(payload)) + payload)


def value_bytes(value: StoredTransaction) -> bytes:
    out = Encoder(flexible=True)
    out.int16(VALUE_VERSION_WRITTEN)
    out.int64(value.producer_id)
    out.int16(value.producer_epoch)
    out.int32(value.timeout_ms)
    out.raw(bytes([value.state]))
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(value.partitions):
        by_topic.setdefault(topic, []).append(partition)
    out.array_length(len(by_topic))
    for topic, indexes in by_topic.items():
        out.string(topic)
        out.array_length(len(indexes))
        for index in indexes:
            out.int32(index)
        out.tagged_fields()
    out.int64(value.last_update_ms)
    out.int64(value.start_ms)
    tags = []
    if value.previous_producer_id != NO_PRODUCER_ID:
        tags.append((TAG_PREVIOUS_PRODUCER_ID, value.previous_producer_id.to_bytes(8, "big", signed=True)))
    if value.next_producer_id != NO_PRODUCER_ID:
        tags.append((TAG_NEXT_PRODUCER_ID, value.next_producer_id.to_bytes(8, "big", signed=True)))
    if value.client_transaction_version:
        tags.append((TAG_CLIENT_TRANSACTION_VERSION, value.client_transaction_version.to_bytes(2, "big", signed=True)))
    out.raw(uvarint(len(tags)))
    for tag, payload in tags:
        _tag(out, tag, payload)
    return out.to_bytes()


def parse_key(data: bytes) -> str:
    reader = RecordReader(data)
    version = reader.int16()
    if version != KEY_VERSION:
        raise CoordinatorRecordError(f"unknown TransactionLogKey version {version}")
    return reader.required_string()


def parse_value(data: bytes | memoryview) -> StoredTransaction:
    reader = RecordReader(data)
    version = reader.int16()
    if version not in (0, 1):
        raise CoordinatorRecordError(f"unknown TransactionLogValue version {version}")
    reader.flexible = version >= FIRST_FLEXIBLE_VALUE
    producer_id = reader.int64()
    epoch = reader.int16()
    timeout_ms = reader.int32()
    status = reader.int8()
    try:
        state = TxnState(status)
    except ValueError:
        raise CoordinatorRecordError(f"unknown transaction state {status}") from None
    partitions = set()
    for _ in range(reader.array_length()):
        topic = reader.required_string()
        for _ in range(reader.array_length()):
            partitions.add((topic, reader.int32()))
        reader.skip_tagged_fields()
    last_update_ms = reader.int64()
    start_ms = reader.int64()
    previous, following, client_version = NO_PRODUCER_ID, NO_PRODUCER_ID, 0
    if reader.flexible:
        for tag, payload in reader.tagged_fields():
            if tag == TAG_PREVIOUS_PRODUCER_ID and len(payload) == 8:
                previous = int.from_bytes(payload, "big", signed=True)
            elif tag == TAG_NEXT_PRODUCER_ID and len(payload) == 8:
                following = int.from_bytes(payload, "big", signed=True)
            elif tag == TAG_CLIENT_TRANSACTION_VERSION and len(payload) == 2:
                client_version = int.from_bytes(payload, "big", signed=True)
    return StoredTransaction(
        producer_id,
        epoch,
        timeout_ms,
        state,
        frozenset(partitions),
        last_update_ms,
        start_ms,
        previous,
        following,
        client_version,
    )
