"""The native API: a tidelog data directory as a library, without TCP, sync (`Log`) or asyncio
(`AsyncLog`). Both are thin over the broker core, so the rules are the server's: the same
validation, idempotent-producer checks, durability and high watermark, and the same
`__consumer_offsets` records for committed offsets (a Kafka client sees an embedded commit).

Durability of an append: "fsync" (the default: answered once fsynced, like acks=all), "os"
(answered once in the page cache: survives the process, not the machine; acks=1), "none" (handed
over and not waited for: no answer, like acks=0). Readers see what is committed: the fsynced
records (the high watermark), as Kafka consumers of the same broker would.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from kio.schema.errors import ErrorCode

from tidelog import limits
from tidelog.coordinator.group.shard import CommitRequest
from tidelog.coordinator.runtime import CoordinatorUnavailable
from tidelog.core.errors import error_code_for
from tidelog.core.partition import Partition
from tidelog.core.types import Acks, IsolationLevel, NewTopic
from tidelog.embedded import home as homes
from tidelog.embedded.appender import AppendResult
from tidelog.embedded.reader import Columns, read_columns, read_records, upper_bound
from tidelog.errors import ClosedError, KafkaError, UnknownTopicOrPartitionError
from tidelog.protocol.record_batch import Header, Record, RecordInput, build_batch, murmur2, plain_inputs
from tidelog.storage import StorageError, TopicMetadata

if TYPE_CHECKING:
    from tidelog.embedded.transaction import AsyncTransaction, Transaction

Durability = Literal["none", "os", "fsync"]
Isolation = Literal["read_committed", "read_uncommitted"]
ACKS: dict[str, Acks] = {"none": Acks.NONE, "os": Acks.LEADER, "fsync": Acks.ALL}
ISOLATION: dict[str, IsolationLevel] = {
    "read_committed": IsolationLevel.READ_COMMITTED,
    "read_uncommitted": IsolationLevel.READ_UNCOMMITTED,
}
T = TypeVar("T")
Bytesish = bytes | bytearray | memoryview | str
INT32_MAX = 2**31 - 1
PLAIN = (bytes, type(None))  # key and value types taken as they are
# What append_many takes per record: a value, or (key, value), or an AppendRecord.
RecordLike = Any


@dataclass(frozen=True, slots=True)
class AppendRecord:
    """A record to append: value and key (bytes, str as UTF-8, or None), headers, and a
    timestamp in ms (None: now)."""

    value: Bytesish | None
    key: Bytesish | None = None
    headers: Sequence[tuple[str, Bytesish | None]] = ()
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: int
    config: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """log start <= last stable offset <= high watermark <= log end."""

    log_start_offset: int
    last_stable_offset: int
    high_watermark: int
    log_end_offset: int


def _bytes(value: object, what: str) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"{what} must be bytes, str or None, not {type(value).__name__}")


def record_input(value: object, key: object = None, headers: object = (), timestamp: object = None) -> RecordInput:
    """One record as the batch builder takes it, with every field checked."""
    if timestamp is None and not headers and type(value) in PLAIN and type(key) in PLAIN:
        return time.time_ns() // 1_000_000, key, value, ()  # type: ignore[return-value]  # the usual shape
    if timestamp is None:
        stamp = time.time_ns() // 1_000_000
    elif isinstance(timestamp, int) and not isinstance(timestamp, bool) and timestamp >= 0:
        stamp = timestamp
    else:
        raise TypeError(f"timestamp must be a non-negative int (ms) or None, not {timestamp!r}")
    checked: list[Header] = []
    for header in headers or ():  # type: ignore[attr-defined]
        if not (isinstance(header, tuple) and len(header) == 2 and isinstance(header[0], str)):
            raise TypeError(f"headers are (str, bytes | None) pairs, not {header!r}")
        checked.append((header[0], _bytes(header[1], "a header value")))
    return stamp, _bytes(key, "key"), _bytes(value, "value"), checked


def _coerce(record: RecordLike) -> RecordInput:
    if isinstance(record, AppendRecord):
        return record_input(record.value, record.key, record.headers, record.timestamp)
    if isinstance(record, tuple) and len(record) == 2:
        return record_input(record[1], record[0])
    return record_input(record)


def coerce_all(records: Iterable[RecordLike]) -> list[RecordInput]:
    """`_coerce` for each record, with one timestamp for the call; a list or tuple of records
    in the usual shapes (bytes values, (bytes, bytes) pairs) goes through the compiled twin's
    `plain_inputs` in one call."""
    now = time.time_ns() // 1_000_000
    if type(records) is list or type(records) is tuple:
        plain = plain_inputs(records, now)
        if plain is not None:
            return plain
    out: list[RecordInput] = []
    for record in records:
        kind = type(record)
        if kind is bytes:
            out.append((now, None, record, ()))
        elif kind is tuple and len(record) == 2 and type(record[0]) in PLAIN and type(record[1]) in PLAIN:
            out.append((now, record[0], record[1], ()))
        else:
            out.append(_coerce(record))
    return out


def _answered(value: T) -> asyncio.Future[T]:
    done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    done.set_result(value)
    return done


def _check_name(topic: object) -> str:
    if not isinstance(topic, str):
        raise TypeError(f"a topic name is a str, not {type(topic).__name__}")
    return topic


class _Handle:
    """What the sync and asyncio faces share: checks, partitioning, and the reads, which run
    in the caller's thread."""

    def __init__(self, home: homes.Home, durability: Durability) -> None:
        self._home = home
        self._default_acks = self._acks_for(durability)
        self.durability = durability
        self._round_robin: dict[str, int] = {}
        self._topics: dict[str, tuple[int, TopicMetadata]] = {}
        self.closed = False

    @property
    def path(self) -> str:
        return str(self._home.path)

    def _check_open(self) -> None:
        if self.closed or self._home.closed:
            raise ClosedError(f"the log at {self._home.path} is closed")

    @staticmethod
    def _acks_for(durability: object) -> Acks:
        try:
            return ACKS[durability]  # type: ignore[index]
        except (KeyError, TypeError):
            raise ValueError(f"durability must be one of {sorted(ACKS)}, not {durability!r}") from None

    @staticmethod
    def _isolation(isolation: object) -> IsolationLevel:
        try:
            return ISOLATION[isolation]  # type: ignore[index]
        except (KeyError, TypeError):
            raise ValueError(f"isolation must be one of {sorted(ISOLATION)}, not {isolation!r}") from None

    def _partition_count(self, topic: str) -> int:
        broker = self._home.broker
        known = self._topics.get(topic)  # (metadata epoch, topic) as last looked up
        if known is not None and known[0] == broker.metadata_epoch:
            return known[1].partitions
        meta = broker.topic(_check_name(topic))
        if meta is None:
            raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}")
        self._topics[topic] = (broker.metadata_epoch, meta)
        return meta.partitions

    def _partition_for(self, topic: str, key: bytes | None, partition: int | None) -> int:
        """Kafka's default partitioner for keyed records (murmur2, as the Java client), round
        robin for the others; or the partition asked for."""
        count = self._partition_count(topic)
        if partition is not None:
            if not isinstance(partition, int) or isinstance(partition, bool) or not 0 <= partition < count:
                raise UnknownTopicOrPartitionError(f"{topic} has no partition {partition!r} (it has {count})")
            return partition
        if key is not None:
            return (murmur2(key) & INT32_MAX) % count  # Kafka's Utils.toPositive
        turn = self._round_robin.get(topic, 0)
        self._round_robin[topic] = turn + 1
        return turn % count

    def _one(
        self,
        topic: str,
        value: object,
        key: object,
        headers: object,
        timestamp: object,
        partition: int | None,
        durability: Durability | None,
    ) -> tuple[RecordInput, Acks, int]:
        """One record to append, checked: the record, the acks of its durability, its partition."""
        self._check_open()
        record = record_input(value, key, headers, timestamp)
        acks = self._default_acks if durability is None else self._acks_for(durability)
        return record, acks, self._partition_for(topic, record[1], partition)

    def _split(
        self, topic: str, records: Iterable[RecordLike], partition: int | None
    ) -> list[tuple[int, list[RecordInput]]]:
        """Records by partition, in order of first appearance; order kept within a partition."""
        inputs = coerce_all(records)
        if not inputs:
            raise ValueError("append_many needs at least one record")
        if partition is not None or self._partition_count(topic) == 1:
            return [(self._partition_for(topic, None, partition or 0), inputs)]
        by_partition: dict[int, list[RecordInput]] = {}
        for record in inputs:
            by_partition.setdefault(self._partition_for(topic, record[1], None), []).append(record)
        return list(by_partition.items())

    def _partition(self, topic: str, partition: int) -> Partition:
        found = self._home.broker.partition(_check_name(topic), partition)
        if found is None:
            raise UnknownTopicOrPartitionError(f"unknown partition {topic}-{partition}")
        return found

    # ---- reads (the caller's thread) ---------------------------------------------------------

    def read(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = limits.EMBEDDED_READ_RECORDS_DEFAULT,
        max_bytes: int = limits.EMBEDDED_READ_BYTES_DEFAULT,
        isolation: Isolation = "read_committed",
    ) -> list[Record]:
        """Records from `offset` on (at most `max_records`, about `max_bytes` of batches); an
        empty list when there is nothing more to read yet. Raises OffsetOutOfRangeError for an
        offset below the log start or past the log end."""
        found = self.read_with_next(
            topic, partition, offset, max_records=max_records, max_bytes=max_bytes, isolation=isolation
        )
        return found[0]

    def read_with_next(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = limits.EMBEDDED_READ_RECORDS_DEFAULT,
        max_bytes: int = limits.EMBEDDED_READ_BYTES_DEFAULT,
        isolation: Isolation = "read_committed",
    ) -> tuple[list[Record], int]:
        """`read`, and the offset to read from next (past control batches too)."""
        self._check_open()
        if not isinstance(offset, int) or max_records < 1 or max_bytes < 1:
            raise ValueError("offset must be an int, max_records and max_bytes positive")
        return read_records(
            self._partition(topic, partition), offset, max_records, max_bytes, self._isolation(isolation)
        )

    def read_columns(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = limits.EMBEDDED_READ_RECORDS_DEFAULT,
        max_bytes: int = limits.EMBEDDED_READ_BYTES_DEFAULT,
        isolation: Isolation = "read_committed",
    ) -> Columns:
        """Like `read`, as numpy columns (offsets, timestamps, keys and values in one buffer)."""
        self._check_open()
        if not isinstance(offset, int) or max_records < 1 or max_bytes < 1:
            raise ValueError("offset must be an int, max_records and max_bytes positive")
        return read_columns(
            self._partition(topic, partition), offset, max_records, max_bytes, self._isolation(isolation)
        )

    def offsets(self, topic: str, partition: int) -> PartitionOffsets:
        self._check_open()
        found = self._partition(topic, partition).offsets()
        return PartitionOffsets(
            found.log_start_offset, found.last_stable_offset, found.high_watermark, found.log_end_offset
        )

    def topics(self) -> list[TopicInfo]:
        self._check_open()
        return [
            TopicInfo(meta.name, meta.topic_id, meta.partitions, dict(meta.overrides))
            for name, meta in sorted(self._home.broker.topics.items())
            if not self._home.broker.is_internal(name)
        ]

    # ---- operations on the home loop ---------------------------------------------------------

    def _create(self, name: str, partitions: int, config: Mapping[str, str] | None) -> TopicInfo:
        broker = self._home.broker
        topic = NewTopic(_check_name(name), partitions, -1, None, dict(config or {}))
        (created,) = broker.create_topics([topic])
        if created.error != ErrorCode.none:
            raise KafkaError.of(created.error, created.message)
        meta = broker.topic(name)
        assert meta is not None
        return TopicInfo(meta.name, meta.topic_id, meta.partitions, dict(meta.overrides))

    def _delete(self, name: str) -> None:
        self._home.broker.delete_topic(_check_name(name))

    def _append(
        self, topic: str, partition: int, records: list[RecordInput], acks: Acks
    ) -> asyncio.Future[AppendResult]:
        return self._home.appender.append(topic, partition, records, acks)

    def _appending(
        self, topic: str, partition: int, records: list[RecordInput], acks: Acks
    ) -> Callable[[], asyncio.Future[AppendResult]]:
        return lambda: self._append(topic, partition, records, acks)

    async def _commit(self, group_id: str, offsets: Mapping[tuple[str, int], int], metadata: str) -> None:
        if not isinstance(group_id, str):
            raise TypeError("a group id is a str")
        wanted: dict[tuple[str, int], tuple[int, int, str | None, int]] = {
            (t, p): (int(o), -1, metadata, -1) for (t, p), o in offsets.items()
        }
        request = CommitRequest(group_id, -1, "", None, wanted)
        errors = await self._with_coordinator(
            lambda: self._home.broker.groups.commit(request, self._home.broker.has_partition)
        )
        for (topic, partition), error in errors.items():
            if error != ErrorCode.none:
                raise KafkaError.of(error, f"committing {group_id} {topic}-{partition}")

    async def _committed(
        self, group_id: str, partitions: Sequence[tuple[str, int]] | None
    ) -> dict[tuple[str, int], int]:
        found = await self._with_coordinator(lambda: self._home.broker.groups.fetch_offsets(group_id, partitions))
        return {tp: committed.offset for tp, committed in found.items() if committed.offset >= 0}

    async def _with_coordinator(self, call: Any) -> Any:
        """Runs a coordinator call, waiting while its shard loads (bounded)."""
        deadline = time.monotonic() + limits.EMBEDDED_COORDINATOR_WAIT_S
        while True:
            try:
                outcome = call()
                return await outcome if asyncio.iscoroutine(outcome) else outcome
            except CoordinatorUnavailable as unavailable:
                if unavailable.error_code != ErrorCode.coordinator_load_in_progress or time.monotonic() > deadline:
                    raise KafkaError.of(unavailable.error_code, str(unavailable)) from None
            await asyncio.sleep(limits.EMBEDDED_COORDINATOR_RETRY_S)

    def _new_producer_id(self) -> tuple[int, int]:
        answer = self._home.broker.idempotent_producer_id()
        if answer.error != ErrorCode.none:
            raise KafkaError.of(answer.error, "no producer id")
        return answer.producer_id, answer.producer_epoch

    async def _wait(
        self, partition: Partition, offset: int, isolation: IsolationLevel, timeout_s: float | None
    ) -> bool:
        """Waits (on the home loop) until records at or past `offset` are readable."""
        return await self._wait_any([(partition, offset)], isolation, timeout_s)

    async def _wait_any(
        self, targets: list[tuple[Partition, int]], isolation: IsolationLevel, timeout_s: float | None
    ) -> bool:
        """Like `_wait`, for whichever of several partitions moves first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            if self.closed or self._home.closed:
                raise ClosedError("closed while waiting")
            waiter: asyncio.Future[None] = loop.create_future()
            for partition, _ in targets:
                partition.watch(waiter)
            try:
                if any(upper_bound(partition, isolation) > offset for partition, offset in targets):
                    return True
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    return False
                await asyncio.wait((waiter,), timeout=left)
            finally:
                for partition, _ in targets:
                    partition.unwatch(waiter)


class Log(_Handle):
    """A data directory opened in this process (`tidelog.open`). Thread-safe; close it (or use
    it as a context manager) to flush and release the directory."""

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            homes.release(self._home)

    def create_topic(self, name: str, partitions: int = 1, config: Mapping[str, str] | None = None) -> TopicInfo:
        """Creates a topic (Kafka's topic configs by name); TopicAlreadyExistsError if it exists."""
        self._check_open()
        return self._home.call(lambda: self._create(name, partitions, config))

    def delete_topic(self, name: str) -> None:
        self._check_open()
        self._home.call(lambda: self._delete(name))

    def topic(
        self, name: str, *, create: bool = False, partitions: int = 1, config: Mapping[str, str] | None = None
    ) -> Topic:
        """A handle on one topic; with `create`, the topic is created if it does not exist."""
        self._check_open()
        if create and self._home.broker.topic(_check_name(name)) is None:
            try:
                self.create_topic(name, partitions, config)
            except KafkaError as error:
                if error.error_code != ErrorCode.topic_already_exists:
                    raise
        self._partition_count(name)
        return Topic(self, name)

    def append(
        self,
        topic: str,
        value: Bytesish | None,
        *,
        key: Bytesish | None = None,
        headers: Sequence[tuple[str, Bytesish | None]] = (),
        timestamp: int | None = None,
        partition: int | None = None,
        durability: Durability | None = None,
    ) -> AppendResult | None:
        """Appends one record; returns where it went once `durability` holds (None for "none")."""
        record, acks, target = self._one(topic, value, key, headers, timestamp, partition, durability)
        result = self._write(topic, target, build_batch([record]), 1, acks)
        return None if acks == Acks.NONE else result

    def append_many(
        self,
        topic: str,
        records: Iterable[RecordLike],
        *,
        partition: int | None = None,
        durability: Durability | None = None,
    ) -> list[AppendResult]:
        """Appends records (values, (key, value) pairs or AppendRecords): each partition's share
        as one batch, contiguous and in order. One result per partition written (none for
        durability "none")."""
        self._check_open()
        acks = self._default_acks if durability is None else self._acks_for(durability)
        results = [
            self._write(topic, target, build_batch(inputs), len(inputs), acks)
            for target, inputs in self._split(topic, records, partition)
        ]
        return [] if acks == Acks.NONE else results

    def _write(self, topic: str, partition: int, batch: bytes, count: int, acks: Acks) -> AppendResult:
        """Appends a batch built in this thread, from this thread (`Broker.produce_from_thread`:
        the engine's append is thread-safe; with "fsync" this thread runs the group commit's
        fdatasync itself, which covers other threads' appends too): no hop to the broker's
        threads and back."""
        if threading.get_ident() == self._home.loop_thread_id:
            raise RuntimeError(
                "the synchronous API would block the event loop that runs this broker; "
                "use tidelog.aio from inside the loop"
            )
        result = self._home.broker.produce_from_thread(topic, partition, batch, durable=acks == Acks.ALL)
        if result.error != ErrorCode.none:
            raise KafkaError.of(result.error, result.message)
        last = result.base_offset + count - 1
        return AppendResult(topic, partition, result.base_offset, last, result.log_append_time_ms)

    def tail(
        self,
        topic: str,
        partition: int,
        from_offset: int,
        *,
        timeout: float | None = None,
        isolation: Isolation = "read_committed",
    ) -> Iterator[Record]:
        """Every record from `from_offset` on, waiting for new ones; stops after `timeout`
        seconds without one (None: never)."""
        level = self._isolation(isolation)
        offset = from_offset
        while True:
            records, offset = self.read_with_next(topic, partition, offset, isolation=isolation)
            yield from records
            if records:
                continue
            target = self._partition(topic, partition)
            if not self._home.call(lambda: self._wait(target, offset, level, timeout)):  # noqa: B023
                return

    def wait_for_any(
        self,
        positions: Mapping[tuple[str, int], int],
        timeout: float | None = None,
        *,
        isolation: Isolation = "read_committed",
    ) -> bool:
        """Waits until one of the partitions ((topic, partition) → offset) has records readable at
        or past its offset; False after `timeout` seconds without (None: no limit)."""
        self._check_open()
        level = self._isolation(isolation)
        targets = [(self._partition(topic, partition), offset) for (topic, partition), offset in positions.items()]
        if not targets:
            raise ValueError("wait_for_any needs at least one partition")
        return bool(self._home.call(lambda: self._wait_any(targets, level, timeout)))

    def commit_offsets(self, group_id: str, offsets: Mapping[tuple[str, int], int], *, metadata: str = "") -> None:
        """Stores a consumer group's committed offsets ((topic, partition) → next offset to
        read) in `__consumer_offsets`, as a Kafka client's OffsetCommit does."""
        self._check_open()
        self._home.call(lambda: self._commit(group_id, offsets, metadata))

    def committed_offsets(
        self, group_id: str, partitions: Sequence[tuple[str, int]] | None = None
    ) -> dict[tuple[str, int], int]:
        """The group's committed offsets (of `partitions`, or all); partitions without one are left out."""
        self._check_open()
        return self._home.call(lambda: self._committed(group_id, partitions))

    def idempotent_producer(self) -> IdempotentProducer:
        """A producer with a new producer id: its appends are deduplicated by sequence, exactly
        as a Kafka client's idempotent producer (a retried call appends nothing)."""
        self._check_open()
        producer_id, epoch = self._home.call(self._new_producer_id)
        return IdempotentProducer(self, producer_id, epoch)

    def transaction(self, transactional_id: str, *, timeout_ms: int = 60_000) -> Transaction:
        """A transactional producer for `transactional_id` (see `tidelog.embedded.transaction`):
        atomic appends to several partitions, with consumer offsets. Getting it fences any
        older producer of the same id, in this process or a Kafka client's."""
        self._check_open()
        from tidelog.embedded.transaction import Transaction  # it builds on this module

        return Transaction(self, transactional_id, timeout_ms)


class Topic:
    """One topic of a `Log`."""

    def __init__(self, log: Log, name: str) -> None:
        self.log = log
        self.name = name

    @property
    def partitions(self) -> int:
        return self.log._partition_count(self.name)

    def append(self, value: Bytesish | None, **kwargs: Any) -> AppendResult | None:
        return self.log.append(self.name, value, **kwargs)

    def append_many(self, records: Iterable[RecordLike], **kwargs: Any) -> list[AppendResult]:
        return self.log.append_many(self.name, records, **kwargs)

    def read(self, partition: int, offset: int, **kwargs: Any) -> list[Record]:
        return self.log.read(self.name, partition, offset, **kwargs)

    def read_columns(self, partition: int, offset: int, **kwargs: Any) -> Columns:
        return self.log.read_columns(self.name, partition, offset, **kwargs)

    def tail(self, partition: int, from_offset: int, **kwargs: Any) -> Iterator[Record]:
        return self.log.tail(self.name, partition, from_offset, **kwargs)

    def offsets(self, partition: int) -> PartitionOffsets:
        return self.log.offsets(self.name, partition)


class _Sequences:
    """An idempotent producer's identity and next sequence per partition. A call that fails
    leaves the sequence where it was, so retrying the same records (`retry_batch`) is
    deduplicated by the broker if the first attempt was appended after all."""

    def __init__(self, log: _Handle, producer_id: int, producer_epoch: int) -> None:
        self.log = log
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.sequences: dict[tuple[str, int], int] = {}

    def batches(
        self, topic: str, records: Iterable[RecordLike], partition: int | None
    ) -> list[tuple[int, bytes, int, int]]:
        """(partition, batch, record count, base sequence) per partition written."""
        self.log._check_open()
        out = []
        for target, inputs in self.log._split(topic, records, partition):
            sequence = self.sequences.get((topic, target), 0)
            batch = build_batch(
                inputs, producer_id=self.producer_id, producer_epoch=self.producer_epoch, base_sequence=sequence
            )
            out.append((target, batch, len(inputs), sequence))
        return out

    def advance(self, topic: str, partition: int, base_sequence: int, count: int) -> None:
        self.sequences[(topic, partition)] = (base_sequence + count) & INT32_MAX  # sequences wrap to 0


class IdempotentProducer(_Sequences):
    """Appends with a producer id, epoch and per-partition sequence: the broker's idempotence
    rules apply, as for a Kafka client's idempotent producer."""

    log: Log

    def append_many(
        self,
        topic: str,
        records: Iterable[RecordLike],
        *,
        partition: int | None = None,
        durability: Durability | None = None,
    ) -> list[AppendResult]:
        acks = self.log._acks_for(durability or self.log.durability)
        results: list[AppendResult] = []
        for target, batch, count, sequence in self.batches(topic, records, partition):
            results.append(self.retry_batch(topic, target, batch, count, acks))
            self.advance(topic, target, sequence, count)
        return results

    def retry_batch(self, topic: str, partition: int, batch: bytes, count: int, acks: Acks) -> AppendResult:
        """Sends a batch built by `batches` (again): appended once, whatever happened before.
        The producer rules run on the broker's loop; the fdatasync, in this thread."""
        home = self.log._home
        page_cache = Acks.LEADER if acks == Acks.ALL else acks
        result = home.call(lambda: home.appender.append_batch(topic, partition, batch, page_cache, count))
        if acks == Acks.ALL:
            try:
                self.log._partition(topic, partition).flush_from_thread(result.last_offset, home.loop)
            except StorageError as error:
                raise KafkaError.of(error_code_for(error), str(error)) from None
        return result

    def append(self, topic: str, value: Bytesish | None, **fields: Any) -> AppendResult:
        partition, durability = fields.pop("partition", None), fields.pop("durability", None)
        record = AppendRecord(value, **fields)
        return self.append_many(topic, [record], partition=partition, durability=durability)[0]


class AsyncIdempotentProducer(_Sequences):
    """`IdempotentProducer` for asyncio."""

    log: AsyncLog

    async def append_many(
        self,
        topic: str,
        records: Iterable[RecordLike],
        *,
        partition: int | None = None,
        durability: Durability | None = None,
    ) -> list[AppendResult]:
        acks = self.log._acks_for(durability or self.log.durability)
        home = self.log._home
        results: list[AppendResult] = []
        for target, batch, count, sequence in self.batches(topic, records, partition):

            def send(p: int = target, b: bytes = batch, n: int = count) -> asyncio.Future[AppendResult]:
                return home.appender.append_batch(topic, p, b, acks, n)

            results.append(await home.call_async(send))
            self.advance(topic, target, sequence, count)
        return results

    async def append(self, topic: str, value: Bytesish | None, **fields: Any) -> AppendResult:
        partition, durability = fields.pop("partition", None), fields.pop("durability", None)
        record = AppendRecord(value, **fields)
        return (await self.append_many(topic, [record], partition=partition, durability=durability))[0]


class AsyncLog(_Handle):
    """The asyncio face of a data directory (`await tidelog.aio.open(path)`); same methods, as
    coroutines, and `tail` as an async iterator."""

    async def __aenter__(self) -> AsyncLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await homes.release_async(self._home)

    async def create_topic(self, name: str, partitions: int = 1, config: Mapping[str, str] | None = None) -> TopicInfo:
        self._check_open()
        return await self._home.call_async(lambda: self._create(name, partitions, config))

    async def delete_topic(self, name: str) -> None:
        self._check_open()
        await self._home.call_async(lambda: self._delete(name))

    def append(
        self,
        topic: str,
        value: Bytesish | None,
        *,
        key: Bytesish | None = None,
        headers: Sequence[tuple[str, Bytesish | None]] = (),
        timestamp: int | None = None,
        partition: int | None = None,
        durability: Durability | None = None,
    ) -> Awaitable[AppendResult | None]:
        """Appends one record: `await` it for where it went, once `durability` holds (None for
        "none"). Bad arguments raise at the call. (An awaitable, not a coroutine: on the
        broker's loop it is the append's own future, one object less per append.)"""
        home = self._home
        known = self._topics.get(topic)
        if (  # the usual call, checked inline: bytes, a partition of a known topic, on the loop
            known is not None
            and known[0] == home.broker.metadata_epoch
            and type(value) in PLAIN
            and type(key) in PLAIN
            and timestamp is None
            and not headers
            and type(partition) is int
            and 0 <= partition < known[1].partitions
            and not (self.closed or home.closed)
            and home.on_home_loop()
        ):
            acks = self._default_acks if durability is None else self._acks_for(durability)
            record: RecordInput = (time.time_ns() // 1_000_000, key, value, ())  # type: ignore[assignment]  # bytes or None, checked above
            answer = home.appender.append(topic, partition, [record], acks)
            return _answered(None) if acks == Acks.NONE else answer
        record, acks, target = self._one(topic, value, key, headers, timestamp, partition, durability)
        if home.on_home_loop():
            answer = home.appender.append(topic, target, [record], acks)
            return _answered(None) if acks == Acks.NONE else answer
        if acks == Acks.NONE:
            home.submit(lambda: self._append(topic, target, [record], acks))
            return _answered(None)
        return asyncio.wrap_future(home.submit(lambda: self._append(topic, target, [record], acks)))

    async def append_many(
        self,
        topic: str,
        records: Iterable[RecordLike],
        *,
        partition: int | None = None,
        durability: Durability | None = None,
    ) -> list[AppendResult]:
        self._check_open()
        acks = self._default_acks if durability is None else self._acks_for(durability)
        shares = self._split(topic, records, partition)
        answers = [self._home.call_async(self._appending(topic, p, rs, acks)) for p, rs in shares]
        if acks == Acks.NONE:
            for answer in answers:
                asyncio.ensure_future(answer).add_done_callback(lambda f: f.exception())
            return []
        return list(await asyncio.gather(*answers))

    async def tail(
        self,
        topic: str,
        partition: int,
        from_offset: int,
        *,
        timeout: float | None = None,
        isolation: Isolation = "read_committed",
    ) -> AsyncIterator[Record]:
        """Every record from `from_offset` on, waking when the high watermark moves."""
        level = self._isolation(isolation)
        offset = from_offset
        while True:
            records, offset = self.read_with_next(topic, partition, offset, isolation=isolation)
            for record in records:
                yield record
            if records:
                continue
            target = self._partition(topic, partition)
            if not await self._home.call_async(lambda: self._wait(target, offset, level, timeout)):  # noqa: B023
                return

    async def commit_offsets(
        self, group_id: str, offsets: Mapping[tuple[str, int], int], *, metadata: str = ""
    ) -> None:
        self._check_open()
        await self._home.call_async(lambda: self._commit(group_id, offsets, metadata))

    async def committed_offsets(
        self, group_id: str, partitions: Sequence[tuple[str, int]] | None = None
    ) -> dict[tuple[str, int], int]:
        self._check_open()
        return await self._home.call_async(lambda: self._committed(group_id, partitions))

    async def ensure_topic(self, name: str, partitions: int = 1, config: Mapping[str, str] | None = None) -> None:
        """Creates the topic unless it exists."""
        self._check_open()
        if self._home.broker.topic(_check_name(name)) is None:
            try:
                await self.create_topic(name, partitions, config)
            except KafkaError as error:
                if error.error_code != ErrorCode.topic_already_exists:
                    raise

    async def idempotent_producer(self) -> AsyncIdempotentProducer:
        self._check_open()
        producer_id, epoch = await self._home.call_async(self._new_producer_id)
        return AsyncIdempotentProducer(self, producer_id, epoch)

    async def transaction(self, transactional_id: str, *, timeout_ms: int = 60_000) -> AsyncTransaction:
        self._check_open()
        from tidelog.embedded.transaction import AsyncTransaction  # it builds on this module

        return await AsyncTransaction(self, transactional_id, timeout_ms).init()


def open(
    path: str | os.PathLike[str], *, durability: Durability = "fsync", config: Mapping[str, str] | None = None
) -> Log:
    """Opens (creating, recovering) the data directory `path` in this process. `config` takes
    broker settings by Kafka's names (as `tidelog serve --set`). Several handles, and an
    in-process server (`tidelog.embedded.serve`), may share one directory."""
    _Handle._acks_for(durability)
    return Log(homes.acquire(path, config), durability)


async def open_async(
    path: str | os.PathLike[str], *, durability: Durability = "fsync", config: Mapping[str, str] | None = None
) -> AsyncLog:
    """`open` for asyncio: if the directory is not open yet, its broker runs on this loop."""
    _Handle._acks_for(durability)
    return AsyncLog(await homes.acquire_async(path, config), durability)
