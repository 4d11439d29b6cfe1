"""The transaction coordinator: transactional ids over `__transaction_state`, and the markers.

Every transactional id lives in one shard, the partition Kafka would pick for it (abs(hashCode)
mod the partition count, as for groups). The rules are in `shard.TransactionShard`; this façade
routes requests, and drives the second half of EndTxn: once Prepare{Commit,Abort} is durable,
it writes the marker into every partition of the transaction through the broker
(`MarkerWriter`: the data partitions and the group coordinator's `__consumer_offsets`), retrying
until each is durable, and then writes Complete{Commit,Abort}. A transaction found in a
Prepare state at load has its markers written again (markers are idempotent for a reader:
a second COMMIT of a finished transaction changes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from kio.schema.errors import ErrorCode

from tidelog import limits
from tidelog.coordinator.group.records import partition_for
from tidelog.coordinator.runtime import (
    CoordinatorLog,
    CoordinatorResult,
    CoordinatorRuntime,
    CoordinatorUnavailable,
    ShardContext,
    now_ms,
)
from tidelog.coordinator.transaction.records import StoredTransaction, TxnState
from tidelog.coordinator.transaction.shard import EndResult, InitResult, TransactionMetadata, TransactionShard

log = logging.getLogger(__name__)

TRANSACTION_STATE_TOPIC = "__transaction_state"
# The coordinator epoch markers carry: the `__transaction_state` partition's leader epoch, which
# cannot change on a single broker.
COORDINATOR_EPOCH = 0
# Marker errors worth retrying (the partition is there, the write failed for now).
RETRIABLE_MARKER_ERRORS = frozenset(
    {
        ErrorCode.not_leader_or_follower,
        ErrorCode.kafka_storage_error,
        ErrorCode.coordinator_load_in_progress,
        ErrorCode.not_coordinator,
        ErrorCode.request_timed_out,
    }
)


class MarkerWriter(Protocol):
    def __call__(
        self,
        producer_id: int,
        epoch: int,
        coordinator_epoch: int,
        commit: bool,
        partitions: Sequence[tuple[str, int]],
    ) -> Awaitable[dict[tuple[str, int], ErrorCode]]:
        """Writes the marker into each partition; the error of each once it is durable (or not)."""
        ...


class TransactionCoordinator:
    """Used from the event loop thread only."""

    def __init__(
        self,
        create_topic: Callable[[], list[CoordinatorLog]],
        allocate_producer_id: Callable[[], int],
        write_markers: MarkerWriter,
        max_timeout_ms: int,
        id_expiration_ms: int,
    ) -> None:
        self._create_topic = create_topic
        self._allocate_producer_id = allocate_producer_id
        self._write_markers = write_markers
        self.max_timeout_ms = max_timeout_ms
        self.id_expiration_ms = id_expiration_ms
        self.runtime: CoordinatorRuntime[TransactionShard] = CoordinatorRuntime(
            "transaction", TRANSACTION_STATE_TOPIC, self._new_shard
        )
        self.partition_count = 0
        # Transactional ids whose markers are being written: (task, the Prepare state).
        self._completing: dict[str, asyncio.Task[None]] = {}
        # Per transactional id: the lock of implicit adds, and how many hold or wait for it.
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def _new_shard(self, context: ShardContext) -> TransactionShard:
        return TransactionShard(context, self._allocate_producer_id, lambda *args: self._prepared(*args))

    # ---- shards ------------------------------------------------------------------------------

    def start(self, logs: list[CoordinatorLog]) -> None:
        self.partition_count = len(logs)
        for partition, partition_log in enumerate(logs):
            self.runtime.load(partition, partition_log)

    def ensure_topic(self) -> None:
        """Creates `__transaction_state` on first use, as Kafka does."""
        if self.partition_count:
            return
        logs = self._create_topic()
        self.partition_count = len(logs)
        for partition, partition_log in enumerate(logs):
            self.runtime.load_empty(partition, partition_log)

    def partition_for(self, transactional_id: str) -> int:
        self.ensure_topic()
        return partition_for(transactional_id, self.partition_count)

    def loaded(self) -> bool:
        """Every shard is live (or there is no `__transaction_state` yet)."""
        return not self.partition_count or self.runtime.fully_loaded()

    def shards_loading(self) -> int:
        """Partitions of `__transaction_state` still being replayed (readiness)."""
        return self.runtime.loading()

    def forget_topic(self) -> None:
        """`__transaction_state` is being deleted: every id goes; the topic is made anew on
        next use."""
        self.runtime.unload_all()
        self.partition_count = 0

    def close(self) -> None:
        for task in self._completing.values():
            task.cancel()
        self._completing.clear()
        self.runtime.close()

    # ---- requests ----------------------------------------------------------------------------

    async def init_producer_id(
        self, transactional_id: str, timeout_ms: int, expected: tuple[int, int] | None
    ) -> InitResult:
        if not 0 < timeout_ms <= self.max_timeout_ms:
            return InitResult(ErrorCode.invalid_transaction_timeout)
        try:
            partition = self.partition_for(transactional_id)
            return await self.runtime.write(
                partition, lambda s: s.init_producer_id(transactional_id, timeout_ms, expected)
            )
        except CoordinatorUnavailable as unavailable:
            return InitResult(unavailable.error_code)

    async def add_partitions(
        self, transactional_id: str, producer_id: int, epoch: int, partitions: frozenset[tuple[str, int]]
    ) -> ErrorCode:
        try:
            partition = self.partition_for(transactional_id)
            return await self.runtime.write(
                partition, lambda s: s.add_partitions(transactional_id, producer_id, epoch, partitions)
            )
        except CoordinatorUnavailable as unavailable:
            return unavailable.error_code

    async def end_transaction(
        self, transactional_id: str, producer_id: int, epoch: int, commit: bool, tv2: bool = False
    ) -> EndResult:
        try:
            partition = self.partition_for(transactional_id)
            result: EndResult = await self.runtime.write(
                partition, lambda s: s.end_transaction(transactional_id, producer_id, epoch, commit, tv2)
            )
        except CoordinatorUnavailable as unavailable:
            return EndResult(unavailable.error_code)
        return result

    def has_partitions(self, transactional_id: str, partitions: frozenset[tuple[str, int]]) -> bool:
        try:
            partition = self.partition_for(transactional_id)
            return self.runtime.read(partition, lambda s: s.has_partitions(transactional_id, partitions))
        except CoordinatorUnavailable:
            return False

    @contextlib.asynccontextmanager
    async def serialized(self, transactional_id: str) -> AsyncIterator[None]:
        """One request at a time per transactional id, in the order they came: AddPartitionsToTxn,
        AddOffsetsToTxn, EndTxn, and TV2's implicit add (a produce that adds its partitions and
        appends runs under it, so the next request of the same producer finds them added and
        appends after it)."""
        lock, users = self._locks.get(transactional_id, (asyncio.Lock(), 0))
        self._locks[transactional_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            # Dropped only when nobody holds or waits for it: a new lock beside a waiter would
            # let a later request append before it.
            lock, users = self._locks[transactional_id]
            if users == 1:
                del self._locks[transactional_id]
            else:
                self._locks[transactional_id] = (lock, users - 1)

    def verify(self, transactional_id: str, producer_id: int, epoch: int, topic: str, index: int) -> ErrorCode:
        """KIP-890 part 1 for a transactional produce (see `TransactionShard.verify`)."""
        try:
            partition = self.partition_for(transactional_id)
            return self.runtime.read(
                partition, lambda s: s.verify(transactional_id, producer_id, epoch, (topic, index))
            )
        except CoordinatorUnavailable:
            return ErrorCode.invalid_txn_state

    def describe(self, transactional_id: str) -> tuple[ErrorCode, TransactionMetadata | None]:
        try:
            partition = self.partition_for(transactional_id)
            return ErrorCode.none, self.runtime.read(partition, lambda s: s.describe(transactional_id))
        except CoordinatorUnavailable as unavailable:
            return unavailable.error_code, None

    def list_transactions(self) -> list[TransactionMetadata]:
        return [m for _, shard in self.runtime.active_shards() for m in shard.list_transactions()]

    # ---- the second half of EndTxn -----------------------------------------------------------

    async def completed(self, transactional_id: str) -> None:
        """Waits until the id's markers are written and Complete* is durable (if they are being
        written now)."""
        running = self._completing.get(transactional_id)
        if running is not None:
            await asyncio.shield(running)

    def _prepared(self, transactional_id: str, prepared: StoredTransaction) -> None:
        """`prepared` is durable: write its markers, then Complete* (once per id at a time)."""
        running = self._completing.get(transactional_id)
        if running is not None and not running.done():
            return
        task = asyncio.ensure_future(self._complete(transactional_id, prepared))
        self._completing[transactional_id] = task
        task.add_done_callback(lambda _: self._completed(transactional_id, task))

    def _completed(self, transactional_id: str, task: asyncio.Task[None]) -> None:
        if self._completing.get(transactional_id) is task:
            del self._completing[transactional_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("completing the transaction of %s failed: %s", transactional_id, task.exception())

    async def _complete(self, transactional_id: str, prepared: StoredTransaction) -> None:
        commit = prepared.state is TxnState.PREPARE_COMMIT
        left = sorted(prepared.partitions)
        backoff = limits.TXN_MARKER_RETRY_BACKOFF_MS / 1000
        while left:
            errors = await self._write_markers(
                prepared.producer_id, prepared.producer_epoch, COORDINATOR_EPOCH, commit, left
            )
            retry = [tp for tp in left if errors.get(tp, ErrorCode.none) in RETRIABLE_MARKER_ERRORS]
            for tp in left:
                error = errors.get(tp, ErrorCode.none)
                if error != ErrorCode.none and error not in RETRIABLE_MARKER_ERRORS:
                    # Kafka drops a partition whose topic went away, and logs any other refusal.
                    log.warning("%s: marker for %s-%d not written: %s", transactional_id, tp[0], tp[1], error.name)
            left = retry
            if left:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, limits.TXN_MARKER_RETRY_BACKOFF_MAX_MS / 1000)
        while True:
            try:
                partition = self.partition_for(transactional_id)
                await self.runtime.write(partition, lambda s: s.complete(transactional_id, prepared))
                return
            except CoordinatorUnavailable as unavailable:
                if unavailable.error_code != ErrorCode.not_coordinator or not self.runtime.is_active(partition):
                    return  # unloaded: whoever loads it next re-sends the markers
                await asyncio.sleep(backoff)

    # ---- housekeeping ------------------------------------------------------------------------

    def abort_timed_out(self) -> int:
        """Aborts, with an epoch bump, every Ongoing transaction past its timeout."""
        now = now_ms()
        aborted = 0
        for context, shard in self.runtime.active_shards():
            for transactional_id in shard.timed_out(now):
                what = f"abort of timed-out transaction {transactional_id}"
                self.runtime.schedule(context.partition, functools.partial(_abort_timed_out, transactional_id), what)
                aborted += 1
        return aborted

    async def expire_ids(self) -> int:
        """transactional.id.expiration.ms: idle ids get a tombstone."""
        now = now_ms()
        removed = 0
        for context, shard in self.runtime.active_shards():
            idle = shard.expired(now, self.id_expiration_ms)
            if idle and self.runtime.is_active(context.partition):
                expire = functools.partial(_expire, idle, now, self.id_expiration_ms)
                removed += await self.runtime.write(context.partition, expire)
        return removed


def _abort_timed_out(transactional_id: str, shard: TransactionShard) -> CoordinatorResult[None]:
    return shard.abort_timed_out(transactional_id)


def _expire(ids: list[str], now: int, expiration_ms: int, shard: TransactionShard) -> CoordinatorResult[int]:
    return shard.expire(ids, now, expiration_ms)
