"""The coordinator runtime: a state machine over an internal topic, one shard per partition.

After Kafka's `coordinator-common` runtime. A coordinator (groups now, transactions next) is a
set of shards, one per partition of its internal topic (`__consumer_offsets`,
`__transaction_state`). A shard's durable state changes only in `replay`, which applies one
record; everything else a shard keeps (members, timers, waiters) lives in memory only.

The contract:

- An **operation** runs synchronously against one shard's state and returns a
  `CoordinatorResult`: the records to write and the response. It never awaits, so nothing else
  runs between its checks and its write; states that must hold off other operations while a
  write is in flight are marked in memory by the operation itself.
- The runtime appends the records as one batch, waits until they are **durable**, replays them
  into the shard strictly in log order, runs the result's `on_committed`, and only then hands
  out the response. If the write fails, nothing is replayed and `on_failed` gives the answer
  instead (or the caller gets `CoordinatorWriteError`).
- **Loading** replays the whole partition through the same `replay`; operations on a shard that
  is still loading raise `CoordinatorLoadInProgress` (COORDINATOR_LOAD_IN_PROGRESS). Partitions
  load one after another, so each is available as early as it can be.
- **Unloading** (the partition moved away, or its topic was deleted) cancels the shard's timers,
  lets the shard fail its waiters, and forgets its state; operations on it raise
  `NotCoordinator` (NOT_COORDINATOR), and writes still in flight answer that too.

So a restart rebuilds exactly what clients were told: both run through one `replay`.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from kio.schema.errors import ErrorCode

from tidelog import limits
from tidelog.protocol.record_batch import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    ControlRecordType,
    RecordDecodeError,
    build_batch,
    decode_batch,
    iter_batches,
    parse_control_record,
)

log = logging.getLogger(__name__)

# (key, value) of one record; a None value is a tombstone.
KeyValue = tuple[bytes, bytes | None]
T = TypeVar("T")


class CoordinatorUnavailable(Exception):
    """The operation cannot run here now; `error_code` is what Kafka answers."""

    error_code = ErrorCode.not_coordinator


class CoordinatorLoadInProgress(CoordinatorUnavailable):
    """The shard is still being replayed: COORDINATOR_LOAD_IN_PROGRESS (clients retry)."""

    error_code = ErrorCode.coordinator_load_in_progress


class NotCoordinator(CoordinatorUnavailable):
    """This broker holds no shard for the partition: NOT_COORDINATOR (clients look again)."""


class CoordinatorWriteError(CoordinatorUnavailable):
    """The records of an operation could not be made durable; nothing was replayed. Kafka's
    coordinators answer a failed append of their log with NOT_COORDINATOR."""


class CoordinatorLog(Protocol):
    """What the runtime needs of one partition of its internal topic; the core supplies it."""

    def append(self, batch: bytes) -> tuple[int, Awaitable[None]]:
        """Appends one batch: its base offset, and an awaitable done once it is durable
        (raising if it cannot be)."""
        ...

    def append_marker(
        self, producer_id: int, producer_epoch: int, coordinator_epoch: int, committed: bool
    ) -> tuple[int, Awaitable[None]]:
        """Appends a transaction marker (the partition's checks first: raises if refused)."""
        ...

    def read_chunk(self, offset: int, max_bytes: int) -> tuple[bytes, int]:
        """Whole batches from `offset` (bytes, and the log end offset)."""
        ...

    @property
    def log_start_offset(self) -> int: ...


class CoordinatorShard(Protocol):
    """The state machine of one partition."""

    def replay(self, offset: int, producer_id: int, producer_epoch: int, key: bytes, value: bytes | None) -> None:
        """Applies one durable record (a None value is a tombstone)."""
        ...

    def replay_end_transaction(self, offset: int, producer_id: int, producer_epoch: int, committed: bool) -> None:
        """Applies a transaction marker of `producer_id` (transactional offset commits)."""
        ...

    def on_loaded(self) -> None:
        """The replay of the whole partition is done; the shard goes live."""
        ...

    def on_unloaded(self) -> None:
        """The shard goes away: fail whatever waits on it. Its timers are cancelled already."""
        ...


S = TypeVar("S", bound=CoordinatorShard)


@dataclass(slots=True)
class CoordinatorResult(Generic[T]):
    """What an operation returns: records to write, and the response once they are durable."""

    records: Sequence[KeyValue]
    response: T
    # Run after the records are durable and replayed, before the response is handed out.
    on_committed: Callable[[], None] | None = None
    # The response to give if the write fails (after undoing what the operation marked).
    on_failed: Callable[[BaseException], T] | None = None
    # (producer id, epoch) of a transactional write (TxnOffsetCommit): the records belong to
    # that producer's open transaction until its marker.
    producer: tuple[int, int] | None = None


class ShardState(enum.Enum):
    LOADING = "loading"
    ACTIVE = "active"
    UNLOADED = "unloaded"


class Timer:
    """A timer of one shard: fires only while the shard is active; cancelled when it unloads."""

    __slots__ = ("_handle", "_timers")

    def __init__(self, timers: set[Timer], delay_s: float, callback: Callable[[], None]) -> None:
        self._timers = timers
        timers.add(self)
        self._handle = asyncio.get_running_loop().call_later(delay_s, self._fire, callback)

    def _fire(self, callback: Callable[[], None]) -> None:
        self._timers.discard(self)
        callback()

    def cancel(self) -> None:
        self._handle.cancel()
        self._timers.discard(self)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Pending:
    durable: asyncio.Future[None]
    base_offset: int
    records: Sequence[KeyValue]
    result: CoordinatorResult[Any]
    response: asyncio.Future[Any]
    # (producer id, epoch, committed) when this write is a transaction marker.
    marker: tuple[int, int, bool] | None = None


class ShardContext:
    """One partition's place in the runtime, and what its shard may use of it: the clock, timers,
    and writes no request waits for (from timers and housekeeping)."""

    def __init__(self, runtime: CoordinatorRuntime[Any], partition: int, log: CoordinatorLog) -> None:
        self.runtime = runtime
        self.partition = partition
        self.log = log
        self.state = ShardState.LOADING
        self.shard: CoordinatorShard | None = None
        self.timers: set[Timer] = set()
        self.pending: collections.deque[_Pending] = collections.deque()
        self.records_loaded = 0

    @property
    def name(self) -> str:
        return f"{self.runtime.topic}-{self.partition}"

    @staticmethod
    def now_ms() -> int:
        return now_ms()

    def call_later(self, delay_s: float, callback: Callable[..., None], *args: Any) -> Timer:
        def fire() -> None:
            if self.state is ShardState.ACTIVE:
                callback(*args)

        return Timer(self.timers, delay_s, fire)

    def write(self, result: CoordinatorResult[Any], what: str) -> None:
        """Writes `result`'s records with nobody awaiting the answer; a failure is logged."""
        if not result.records:
            if result.on_committed is not None:
                result.on_committed()
            return
        done = self.append(result)

        def report(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is not None:
                log.error("%s: writing %s failed: %s", self.name, what, future.exception())

        done.add_done_callback(report)

    # ---- the write pipeline ------------------------------------------------------------------

    def append(self, result: CoordinatorResult[T]) -> asyncio.Future[T]:
        """Appends the records now; the returned future gets the response once they are durable
        and replayed (or the failure answer)."""
        loop = asyncio.get_running_loop()
        response: asyncio.Future[T] = loop.create_future()
        if not result.records:
            if result.on_committed is not None:
                result.on_committed()
            response.set_result(result.response)
            return response
        producer_id, producer_epoch = result.producer or (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
        batch = build_batch(
            [(now_ms(), key, value, ()) for key, value in result.records],
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            transactional=result.producer is not None,
        )
        try:
            base_offset, durable = self.log.append(batch)
        except Exception as error:  # refused at once: nothing is in the log
            self._fail(result, response, error)
            return response
        self._track(_Pending(asyncio.ensure_future(durable), base_offset, result.records, result, response))
        return response

    def append_marker(
        self, producer_id: int, producer_epoch: int, coordinator_epoch: int, committed: bool
    ) -> asyncio.Future[None]:
        """Writes a transaction marker into the partition; once it is durable the shard replays
        it (`replay_end_transaction`), in log order with the other writes."""
        response: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        result: CoordinatorResult[None] = CoordinatorResult((), None)
        try:
            base_offset, durable = self.log.append_marker(producer_id, producer_epoch, coordinator_epoch, committed)
        except Exception as error:
            self._fail(result, response, error)
            return response
        marker = (producer_id, producer_epoch, committed)
        self._track(_Pending(asyncio.ensure_future(durable), base_offset, (), result, response, marker))
        return response

    def _track(self, pending: _Pending) -> None:
        self.pending.append(pending)
        # Replayed from the future's callback, so a caller that goes away (its connection
        # closed) leaves no durable write unapplied.
        pending.durable.add_done_callback(lambda _: self._apply_durable())

    def _apply_durable(self) -> None:
        """Replays finished writes from the oldest on, so records apply in log order."""
        while self.pending and self.pending[0].durable.done():
            pending = self.pending.popleft()
            failure = pending.durable.exception() if not pending.durable.cancelled() else NotCoordinator()
            if self.state is not ShardState.ACTIVE:
                failure = NotCoordinator(f"{self.name} was unloaded while the write was in flight")
            if failure is not None:
                self._fail(pending.result, pending.response, failure)
                continue
            assert self.shard is not None
            if pending.marker is not None:
                producer_id, producer_epoch, committed = pending.marker
                self.shard.replay_end_transaction(pending.base_offset, producer_id, producer_epoch, committed)
            producer_id, producer_epoch = pending.result.producer or (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
            for at, (key, value) in enumerate(pending.records):
                self.shard.replay(pending.base_offset + at, producer_id, producer_epoch, key, value)
            if pending.result.on_committed is not None:
                pending.result.on_committed()
            if not pending.response.done():
                pending.response.set_result(pending.result.response)

    @staticmethod
    def _fail(result: CoordinatorResult[T], response: asyncio.Future[T], error: BaseException) -> None:
        if response.done():
            return
        if result.on_failed is not None:
            response.set_result(result.on_failed(error))
        elif isinstance(error, NotCoordinator):
            response.set_exception(error)
        else:
            failure = CoordinatorWriteError(str(error))
            failure.__cause__ = error
            response.set_exception(failure)

    # ---- load --------------------------------------------------------------------------------

    async def load(self) -> None:
        """Replays the whole partition, yielding to the event loop between chunks so other
        requests are served (COORDINATOR_LOAD_IN_PROGRESS for this shard meanwhile)."""
        offset = self.log.log_start_offset
        while self.state is ShardState.LOADING:
            chunk, log_end = self.log.read_chunk(offset, limits.COORDINATOR_LOAD_CHUNK_BYTES)
            if not chunk:
                break
            offset = self._replay_chunk(chunk, offset)
            if offset >= log_end:
                break
            await asyncio.sleep(0)

    def _replay_chunk(self, chunk: bytes, offset: int) -> int:
        assert self.shard is not None
        for header, batch in iter_batches(chunk):
            try:
                _, decoded = decode_batch(batch)
            except RecordDecodeError as error:  # compressed or damaged: the log checked its CRC
                log.error("%s: batch at %d unreadable: %s", self.name, header.base_offset, error)
                offset = header.last_offset + 1
                continue
            for record_offset, _, key, value, _ in decoded:
                try:
                    if header.is_control:
                        marker, _ = parse_control_record(key, value)
                        committed = marker is ControlRecordType.COMMIT
                        self.shard.replay_end_transaction(
                            record_offset, header.producer_id, header.producer_epoch, committed
                        )
                    elif key is not None:
                        self.shard.replay(record_offset, header.producer_id, header.producer_epoch, key, value)
                except (ValueError, RecordDecodeError) as error:  # one bad record must not stop the load
                    log.error("%s: record at %d skipped: %s", self.name, record_offset, error)
                self.records_loaded += 1
            offset = header.last_offset + 1
        return offset


class CoordinatorRuntime(Generic[S]):
    """The shards of one internal topic on this broker. Used from the event loop thread only."""

    def __init__(self, name: str, topic: str, shard_factory: Callable[[ShardContext], S]) -> None:
        self.name = name  # "group", "transaction": for the log
        self.topic = topic
        self._shard_factory = shard_factory
        self._contexts: dict[int, ShardContext] = {}
        self._load_queue: collections.deque[ShardContext] = collections.deque()
        self._loader: asyncio.Task[None] | None = None

    # ---- shards ------------------------------------------------------------------------------

    def load(self, partition: int, partition_log: CoordinatorLog) -> None:
        """Takes the partition: its shard replays the log in the background, after any shard
        queued before it."""
        context = self._add(partition, partition_log)
        self._load_queue.append(context)
        if self._loader is None or self._loader.done():
            self._loader = asyncio.ensure_future(self._load_queued())

    def load_empty(self, partition: int, partition_log: CoordinatorLog) -> None:
        """Takes a partition known to be empty (its topic was just created): live at once."""
        context = self._add(partition, partition_log)
        self._activate(context)

    def _add(self, partition: int, partition_log: CoordinatorLog) -> ShardContext:
        if partition in self._contexts:
            raise ValueError(f"{self.topic}-{partition} is loaded already")
        context = ShardContext(self, partition, partition_log)
        context.shard = self._shard_factory(context)
        self._contexts[partition] = context
        return context

    def _activate(self, context: ShardContext) -> None:
        context.state = ShardState.ACTIVE
        assert context.shard is not None
        context.shard.on_loaded()

    async def _load_queued(self) -> None:
        loop = asyncio.get_running_loop()
        started, total = loop.time(), 0
        while self._load_queue:
            context = self._load_queue.popleft()
            if context.state is not ShardState.LOADING:
                continue
            shard_started = loop.time()
            await context.load()
            if context.state is not ShardState.LOADING:
                continue  # unloaded meanwhile
            self._activate(context)
            total += context.records_loaded
            if context.records_loaded:
                log.info(
                    "loaded %s: %d record(s) in %.0f ms",
                    context.name,
                    context.records_loaded,
                    (loop.time() - shard_started) * 1000,
                )
            await asyncio.sleep(0)  # requests waiting on the loop go first
        log.info("%s coordinator loaded: %d record(s) in %.0f ms", self.name, total, (loop.time() - started) * 1000)

    def unload(self, partition: int) -> None:
        """Gives the partition up: timers cancelled, waiters failed by the shard, state dropped."""
        context = self._contexts.pop(partition, None)
        if context is None:
            return
        was_live = context.state is ShardState.ACTIVE
        context.state = ShardState.UNLOADED
        for timer in list(context.timers):
            timer.cancel()
        if was_live and context.shard is not None:
            context.shard.on_unloaded()
        # Writes still in flight answer NOT_COORDINATOR when their appends end (_apply_durable).

    def unload_all(self) -> None:
        for partition in list(self._contexts):
            self.unload(partition)

    def close(self) -> None:
        self.unload_all()
        if self._loader is not None:
            self._loader.cancel()

    @property
    def partitions(self) -> list[int]:
        return sorted(self._contexts)

    def is_active(self, partition: int) -> bool:
        context = self._contexts.get(partition)
        return context is not None and context.state is ShardState.ACTIVE

    def fully_loaded(self) -> bool:
        return bool(self._contexts) and all(c.state is ShardState.ACTIVE for c in self._contexts.values())

    def loading(self) -> int:
        """How many shards are still replaying their partition."""
        return sum(1 for c in self._contexts.values() if c.state is ShardState.LOADING)

    def active_shards(self) -> list[tuple[ShardContext, S]]:
        return [
            (c, c.shard)  # type: ignore[misc]
            for _, c in sorted(self._contexts.items())
            if c.state is ShardState.ACTIVE
        ]

    def context(self, partition: int) -> ShardContext:
        """The live partition's context; raises NotCoordinator / CoordinatorLoadInProgress."""
        context = self._contexts.get(partition)
        if context is None:
            raise NotCoordinator(f"{self.topic}-{partition} is not coordinated here")
        if context.state is ShardState.LOADING:
            raise CoordinatorLoadInProgress(f"{self.topic}-{partition} is loading")
        return context

    def shard(self, partition: int) -> S:
        shard = self.context(partition).shard
        assert shard is not None
        return shard  # type: ignore[return-value]

    # ---- operations --------------------------------------------------------------------------

    async def write(self, partition: int, operation: Callable[[S], CoordinatorResult[T]]) -> T:
        """Runs `operation` on the partition's shard now and answers once its records are
        durable and replayed. Raises NotCoordinator, CoordinatorLoadInProgress, or
        CoordinatorWriteError (when the result names no failure answer)."""
        context = self.context(partition)
        result = operation(self.shard(partition))
        # Shielded: the write goes on (and is replayed) even if the caller goes away.
        return await asyncio.shield(context.append(result))

    async def write_marker(
        self, partition: int, producer_id: int, producer_epoch: int, coordinator_epoch: int, committed: bool
    ) -> None:
        """Writes a transaction marker into the partition and waits until the shard replayed it.
        Raises NotCoordinator, CoordinatorLoadInProgress, or CoordinatorWriteError (with the
        partition's refusal as its cause)."""
        context = self.context(partition)
        await asyncio.shield(context.append_marker(producer_id, producer_epoch, coordinator_epoch, committed))

    def read(self, partition: int, operation: Callable[[S], T]) -> T:
        """Runs `operation`, which writes nothing, on the partition's shard now."""
        return operation(self.shard(partition))

    def schedule(self, partition: int, operation: Callable[[S], CoordinatorResult[Any]], what: str) -> None:
        """Runs `operation` now if the shard is live, writing its records with nobody waiting."""
        if not self.is_active(partition):
            return
        context = self.context(partition)
        context.write(operation(self.shard(partition)), what)
