"""One partition's log on this broker: the native log, producer state, and the group commit."""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import NamedTuple, NoReturn

from tidelog import limits
from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import (
    CONTROL_FLAG,
    HEADER_BYTES,
    MAGIC_V2,
    PRODUCER_FIELDS,
    PRODUCER_FIELDS_AT,
    TRANSACTIONAL_FLAG,
    ControlRecordType,
    build_control_batch,
)
from tidelog.stats import BATCH_BUCKETS, Histogram
from tidelog.storage._engine import (
    AppendInfo,
    CorruptBatchError,
    FileSlice,
    InvalidRecordError,
    LogConfig,
    PartitionLog,
    StorageError,
)
from tidelog.storage.producer_state import (
    ProducerStateError,
    ProducerStateManager,
    last_sequence_of,
)

log = logging.getLogger(__name__)


class TopicPartition(NamedTuple):
    topic: str
    partition: int

    def directory_name(self) -> str:
        """Kafka's partition directory name, `<topic>-<partition>`."""
        return f"{self.topic}-{self.partition}"


def log_config_for(config: TopicConfig, preallocate_bytes: int = 0) -> LogConfig:
    """The engine's settings for a log of a topic with `config`; the active segment's file is
    zeroed `preallocate_bytes` ahead of the log's end (`tidelog.log.preallocate.bytes`)."""
    return LogConfig(
        segment_bytes=config.effective_segment_bytes,
        segment_ms=config.segment_ms,
        segment_index_bytes=config.segment_index_bytes,
        index_interval_bytes=config.index_interval_bytes,
        retention_ms=config.retention_ms,
        retention_bytes=config.retention_bytes,
        max_message_bytes=config.max_message_bytes,
        log_append_time=config.message_timestamp_type == "LogAppendTime",
        message_timestamp_before_max_ms=config.message_timestamp_before_max_ms,
        message_timestamp_after_max_ms=config.message_timestamp_after_max_ms,
        compact=config.compact,
        delete_retention_ms=config.delete_retention_ms,
        min_compaction_lag_ms=config.min_compaction_lag_ms,
        max_compaction_lag_ms=config.max_compaction_lag_ms,
        preallocate_bytes=preallocate_bytes,
    )


class Appended(NamedTuple):
    """What an append answers: a new batch's offsets, or a duplicate's original ones."""

    first_offset: int
    last_offset: int
    log_append_time_ms: int
    log_start_offset: int
    duplicate: bool = False


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class GroupCommit:
    """Waits for durability with one fdatasync in flight per log at a time.

    A caller waits for an offset; when no flush is running one starts in `executor` (off the
    event loop, GIL released in Rust). When it ends, every waiter whose offset it covers is
    released, and if others are left (they appended during that flush) exactly one more flush
    starts and covers all of them. So producers never queue behind each other's fsyncs.
    """

    def __init__(self, log: PartitionLog, executor: Executor, on_durable: Callable[[int], None] | None = None) -> None:
        self._log = log
        self._executor = executor
        self._on_durable = on_durable
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()
        self._flushing = False
        self._requested = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_start = 0.0
        self._closed = False
        self.flushes = 0
        # Read by the metrics endpoint (on the loop): each fsync's time, and how many waiters
        # (acks=all appends) it released.
        self.flush_seconds = Histogram()
        self.flush_waiters = Histogram(BATCH_BUCKETS)

    def close(self) -> None:
        """No flush starts after this (the log is about to close, its flush pool to stop)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def request_flush(self) -> None:
        """Asks for a flush soon with nobody waiting on it (to move the high watermark).

        Such flushes start at most every `limits.BACKGROUND_FLUSH_INTERVAL_S`, so acks=1 traffic
        gets few large fsyncs rather than many small ones; a waiter (acks=all) starts one at once.
        """
        self._requested = True
        if self._flushing or self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self._last_start + limits.BACKGROUND_FLUSH_INTERVAL_S - loop.time()
        if delay <= 0:
            self._start_flush()
        else:
            self._timer = loop.call_later(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self._start_flush()

    async def wait_durable(self, offset: int) -> None:
        """Returns once every offset up to and including `offset` is on disk."""
        future = self.durable_future(offset)
        if future is not None:
            await future

    def durable_future(self, offset: int) -> asyncio.Future[None] | None:
        """A future done once `offset` is on disk; None if it already is."""
        if offset < self._log.recovery_point:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (offset, next(self._sequence), future))
        self._start_flush()
        return future

    @property
    def waiting(self) -> bool:
        """Whether anyone waits for durability (read from other threads: a hint only)."""
        return bool(self._waiters)

    def released(self, durable: int) -> None:
        """A flush made outside this group commit (a synchronous caller running the engine's
        flush in its own thread) made every offset below `durable` durable: its waiters go."""
        while self._waiters and self._waiters[0][0] < durable:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
        if self._on_durable is not None:
            self._on_durable(durable)

    def _start_flush(self) -> None:
        if self._closed or self._flushing or not (self._waiters or self._requested):
            return
        self._flushing = True
        self._requested = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flushes += 1
        loop = asyncio.get_running_loop()
        self._last_start = loop.time()
        flush = loop.run_in_executor(self._executor, self._timed_flush)
        flush.add_done_callback(self._flush_done)

    def _timed_flush(self) -> tuple[int, float]:
        """In the flush pool: the engine's flush (fdatasync of what changed), and its duration."""
        started = time.perf_counter()
        durable = self._log.flush()
        return durable, time.perf_counter() - started

    def _flush_done(self, flush: asyncio.Future[tuple[int, float]]) -> None:
        self._flushing = False
        error = flush.exception()
        if error is not None:  # fsync failed: nothing waiting can be called durable
            waiters, self._waiters = self._waiters, []
            for _, _, future in waiters:
                if not future.done():
                    future.set_exception(error)
            return
        durable, seconds = flush.result()
        released = 0
        while self._waiters and self._waiters[0][0] < durable:
            _, _, future = heapq.heappop(self._waiters)
            released += 1
            if not future.done():
                future.set_result(None)
        self.flush_seconds.observe(seconds)
        self.flush_waiters.observe(released)
        if self._on_durable is not None:
            self._on_durable(durable)
        if self._waiters:
            self._start_flush()
        elif self._requested:
            self._requested = False
            self.request_flush()


NO_LEADER_EPOCH = -1


class AppendOrigin(enum.Enum):
    """Who appends (Kafka's AppendOrigin): clients' batches pass the producer rules and may not
    be control batches; the broker's coordinators write their own records and markers."""

    CLIENT = "client"
    COORDINATOR = "coordinator"


class UnifiedLog:
    """A partition's log on this broker: the native log, its producer state, and the group commit
    that makes appends durable. Kafka's `UnifiedLog`, without replication (the core's
    `Partition` holds the high watermark). Not for use from several event loops.

    The durable offset is the recovery point: every offset below it is fsynced.
    """

    def __init__(
        self,
        topic_partition: TopicPartition,
        log: PartitionLog,
        executor: Executor,
        producer_state: ProducerStateManager | None = None,
    ) -> None:
        self.topic_partition = topic_partition
        self.log = log
        self.executor = executor
        self.producer_state = (
            producer_state if producer_state is not None else ProducerStateManager(Path(log.directory))
        )
        self.group_commit = GroupCommit(log, executor, self._durable_moved)
        # Stamped in every batch appended (partitionLeaderEpoch), as Kafka's leader does; the
        # core's Partition sets it. -1 (none) for logs no partition hosts (tools, tests).
        self.leader_epoch = NO_LEADER_EPOCH
        # Damaged batches read verification found in this log since it was opened.
        self.corrupt_batches = 0
        # Told (on the event loop) when the durable offset moved; the core's Partition listens.
        self.on_durable: Callable[[int], None] | None = None

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def durable_offset(self) -> int:
        """Every offset below this is on disk."""
        return self.log.recovery_point

    def append_unchecked(self, records: bytes | bytearray | memoryview) -> AppendInfo:
        """Validates and appends without producer rules (tests, tools); not yet durable."""
        return self.log.append(records, now_ms(), self.leader_epoch)

    async def append_durable(self, records: bytes | bytearray | memoryview) -> AppendInfo:
        """`append_unchecked`, then waits for the group commit that makes it durable."""
        info = self.log.append(records, now_ms(), self.leader_epoch)
        await self.group_commit.wait_durable(info.last_offset)
        return info

    def append(self, records: bytes | bytearray | memoryview, origin: AppendOrigin = AppendOrigin.CLIENT) -> Appended:
        """The broker's append, with the idempotent-producer rules (`producer_state`) for
        clients' batches. A retried batch appends nothing and answers its original offsets
        (`duplicate`). The data is in the page cache; `durable_future` waits for the disk."""
        if origin is AppendOrigin.COORDINATOR:
            appended = self._append(records, None, from_client=False)
            if len(records) >= HEADER_BYTES:
                _, attributes, _, _, producer_id, epoch, _ = PRODUCER_FIELDS.unpack_from(records, PRODUCER_FIELDS_AT)
                if attributes & TRANSACTIONAL_FLAG and not attributes & CONTROL_FLAG and producer_id >= 0:
                    # A coordinator's transactional records (TxnOffsetCommit): open until the marker.
                    self.producer_state.begin_transaction(producer_id, epoch, appended.first_offset)
            return appended
        if len(records) < HEADER_BYTES:  # not a batch: the log refuses it with the reason
            return self._append(records, None)
        magic, attributes, offset_delta, max_timestamp, producer_id, epoch, base_sequence = PRODUCER_FIELDS.unpack_from(
            records, PRODUCER_FIELDS_AT
        )
        if magic != MAGIC_V2 or attributes & CONTROL_FLAG:  # refused by the log, as it is
            return self._append(records, None)
        transactional = bool(attributes & TRANSACTIONAL_FLAG)
        if producer_id < 0:
            if transactional:
                self._refuse(records, InvalidRecordError("a transactional batch without a producer id"))
            return self._append(records, None)
        if base_sequence < 0:
            self._refuse(records, InvalidRecordError(f"producer {producer_id} sent a batch without a sequence"))
        last_sequence = last_sequence_of(base_sequence, offset_delta)
        try:
            duplicate = self.producer_state.check(producer_id, epoch, base_sequence, last_sequence, transactional)
        except ProducerStateError as error:
            self._refuse(records, error)
        if duplicate is not None:
            self.log.batch_headers(records, now_ms())  # a damaged retry is refused as damaged
            append_time = duplicate.timestamp if duplicate.log_append_time else -1
            first_offset, last_offset = duplicate.first_offset, duplicate.last_offset
            return Appended(first_offset, last_offset, append_time, self.log.log_start_offset, duplicate=True)
        producer = (producer_id, epoch, base_sequence, last_sequence, offset_delta, max_timestamp, transactional)
        return self._append(records, producer)

    def append_marker(self, producer_id: int, epoch: int, coordinator_epoch: int, aborted: bool) -> Appended:
        """Appends the coordinator's COMMIT or ABORT marker for `producer_id` (Kafka's checks
        first: ProducerStateError) and ends its transaction here; an abort of a transaction that
        wrote here goes into the segment's `.txnindex`. The data is in the page cache."""
        self.producer_state.check_marker(producer_id, epoch, coordinator_epoch)
        marker = ControlRecordType.ABORT if aborted else ControlRecordType.COMMIT
        timestamp = now_ms()
        batch = build_control_batch(marker, producer_id, epoch, coordinator_epoch, timestamp)
        appended = self._append(batch, None, from_client=False)
        completed = self.producer_state.complete_transaction(
            producer_id, epoch, coordinator_epoch, appended.first_offset, aborted, timestamp
        )
        if completed is not None and aborted:
            last_stable = self.producer_state.first_undecided_offset(completed.last_offset + 1)
            self.log.append_aborted_txn(producer_id, completed.first_offset, completed.last_offset, last_stable)
        return appended

    def active_producers(self) -> list[tuple[int, int, int]]:
        """(producer id, last offset of its last batch or -1, epoch) of every producer the state
        knows: the cleaner keeps each one's last batch (Kafka's lastRecordsOfActiveProducers)."""
        return [(pid, entry.last_offset, entry.epoch) for pid, entry in self.producer_state.producers.items()]

    def first_unstable_offset(self, high_watermark: int) -> int | None:
        """See `ProducerStateManager.first_unstable_offset`."""
        return self.producer_state.first_unstable_offset(high_watermark)

    def aborted_transactions(self, fetch_offset: int, upper_bound: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of each aborted transaction a read_committed fetch of
        [fetch_offset, upper_bound) must be told about (from the `.txnindex` files)."""
        return [(pid, first) for pid, first, _ in self.aborted_ranges(fetch_offset, upper_bound)]

    def aborted_ranges(self, fetch_offset: int, upper_bound: int) -> list[tuple[int, int, int]]:
        """(producer id, first offset, last offset) of the same transactions."""
        return [(pid, first, last) for pid, first, last, _ in self.log.collect_aborted_txns(fetch_offset, upper_bound)]

    def append_plain(self, records: bytes | bytearray | memoryview) -> tuple[Appended, bool]:
        """Appends batches without a producer id from any thread (the native log is thread-safe
        and such batches touch no producer state). Returns the offsets and whether the segment
        rolled: the caller hands the roll's snapshot to the event loop (`snapshot_now`)."""
        if len(records) >= HEADER_BYTES:
            magic, attributes, _, _, producer_id, _, _ = PRODUCER_FIELDS.unpack_from(records, PRODUCER_FIELDS_AT)
            if producer_id >= 0 or attributes & (TRANSACTIONAL_FLAG | CONTROL_FLAG):
                raise ValueError("only batches without a producer id may be appended from any thread")
        info = self.log.append(records, now_ms(), self.leader_epoch, from_client=True)
        appended = Appended(info.first_offset, info.last_offset, info.log_append_time_ms, info.log_start_offset)
        return appended, info.rolled

    def snapshot_now(self) -> None:
        """On the event loop, after a roll made by an append from another thread: what `_rolled`
        does, the snapshot as of the log end offset (consistent because only the event loop
        changes producer state)."""
        self._rolled(self.log.log_end_offset)

    def _rolled(self, offset: int) -> None:
        """After a roll, as Kafka does: a producer-state snapshot as of `offset`, and a flush of
        the sealed segment whatever the acks (the background flush, `request_flush`), so the
        recovery point passes it: recovery skips it after a crash and the cleaner may take it
        (it cleans nothing above the recovery point) even with `tidelog.flush.before.ack=false`."""
        self._snapshot_in_background(offset)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # a tool or test appending without an event loop flushes by itself
        self.group_commit.request_flush()

    def _refuse(self, records: bytes | bytearray | memoryview, error: StorageError) -> NoReturn:
        """Raises `error`, unless the batch is malformed: Kafka checks the batch before the
        producer rules, so a damaged batch is refused as damaged (`batch_headers` raises)."""
        self.log.batch_headers(records, now_ms())
        raise error

    def _append(
        self,
        records: bytes | bytearray | memoryview,
        producer: tuple[int, int, int, int, int, int, bool] | None,
        from_client: bool = True,
    ) -> Appended:
        info = self.log.append(records, now_ms(), self.leader_epoch, from_client=from_client)
        if info.rolled:  # the producer state is still that before this batch
            self._rolled(info.first_offset)
        if producer is not None:
            producer_id, epoch, first_sequence, last_sequence, offset_delta, max_timestamp, transactional = producer
            log_append_time = info.log_append_time_ms >= 0
            timestamp = info.log_append_time_ms if log_append_time else max_timestamp
            self.producer_state.record(
                producer_id,
                epoch,
                first_sequence,
                last_sequence,
                info.last_offset,
                offset_delta,
                timestamp,
                log_append_time,
                transactional,
            )
        return Appended(info.first_offset, info.last_offset, info.log_append_time_ms, info.log_start_offset)

    def durable_future(self, offset: int) -> asyncio.Future[None] | None:
        """A future done once `offset` is on disk (group commit); None if it already is."""
        return self.group_commit.durable_future(offset)

    def request_flush(self) -> None:
        """A flush soon that nobody waits on (it moves the durable offset)."""
        self.group_commit.request_flush()

    def _durable_moved(self, offset: int) -> None:
        if self.on_durable is not None:
            self.on_durable(offset)

    def _snapshot_in_background(self, offset: int) -> None:
        """Takes the state's bytes now and writes them in the flush pool, off the event loop."""
        data = self.producer_state.snapshot_bytes()
        directory = self.producer_state.directory
        done = self.executor.submit(ProducerStateManager.write_snapshot, directory, offset, data)
        done.add_done_callback(self._snapshot_written)

    def _snapshot_written(self, done: Future[None]) -> None:
        error = done.exception()
        if error is not None:  # the log replays from an older snapshot after a restart instead
            log.error("producer-state snapshot of %s failed: %s", self.topic_partition.directory_name(), error)

    def snapshot_producer_state(self) -> None:
        """A snapshot at the log end offset, written now (clean shutdown)."""
        self.producer_state.take_snapshot(self.log.log_end_offset)

    def read(
        self, offset: int, max_bytes: int, upper_bound: int, min_one_batch: bool = True, wait: bool = True
    ) -> FileSlice | None:
        """Whole batches from the one holding `offset`, none at or above `upper_bound`, each
        checked since the open. Bytes not verified yet: with `wait`, waits for the segment's
        pass (GIL released); without, raises NotVerifiedError (read again shortly). A damaged
        batch raises CorruptBatchError (KAFKA_STORAGE_ERROR), logged once."""
        try:
            return self.log.read(offset, max_bytes, upper_bound, min_one_batch, wait)
        except CorruptBatchError:
            self.report_damage()
            raise

    def report_damage(self) -> int:
        """Logs the damage verification found since the last call (each batch once) and counts
        it in `corrupt_batches`; returns how many."""
        found = self.log.take_damage()
        for path, position, end, first, last, reason in found:
            log.error(
                "corrupt batch in %s at bytes %d..%d (offsets %d..%d): %s. It is never served: reads that "
                "reach it answer KAFKA_STORAGE_ERROR. See `tidelog recover` in docs/operations.md",
                path,
                position,
                end,
                first,
                last,
                reason,
            )
        self.corrupt_batches += len(found)
        return len(found)

    def scrub(self, bytes_per_sec: int, budget: int) -> int:
        """Verifies about `budget` bytes of the segments not verified yet (the background scrub:
        run it off the event loop), at most `bytes_per_sec` unless a reader waits; returns the
        bytes checked (0: nothing left)."""
        checked = self.log.scrub(bytes_per_sec, budget)
        self.report_damage()
        return checked
