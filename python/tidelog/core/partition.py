"""A partition this broker hosts: its log, its role, its high watermark, and who waits on it.

After Kafka's `cluster.Partition`. The log (`storage.UnifiedLog`) knows offsets, producer state
and durability; this class decides what is committed. Today every partition is a leader with no
followers, so the high watermark is the durable offset (or, with
`tidelog.flush.before.ack=false`, the log end offset, as on a single Kafka broker). A follower,
or a leader whose high watermark comes from its in-sync replicas, changes this class only: the
service and the wire handlers read `high_watermark`, `last_stable_offset` and `is_leader`.

Invariant, asserted whenever the high watermark moves:
log start offset <= last stable offset <= high watermark <= log end offset.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from tidelog.storage import Appended, AppendOrigin, FileSlice, TopicPartition, UnifiedLog

# The leader epoch of every partition until leaders can change (replication).
INITIAL_LEADER_EPOCH = 0
# OffsetForLeaderEpoch's "unknown" answer (Kafka's UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET).
NO_EPOCH = -1
NO_EPOCH_OFFSET = -1


@dataclass(frozen=True, slots=True)
class Offsets:
    """One consistent reading of a partition's offsets."""

    log_start_offset: int
    last_stable_offset: int
    high_watermark: int
    log_end_offset: int


class Partition:
    """Used from the event loop thread only."""

    def __init__(
        self, topic_partition: TopicPartition, topic_id: uuid.UUID, log: UnifiedLog, durable_acks: bool
    ) -> None:
        self.topic_partition = topic_partition
        self.topic_id = topic_id
        self.log = log
        self.durable_acks = durable_acks
        self.leader_epoch = INITIAL_LEADER_EPOCH
        log.leader_epoch = self.leader_epoch
        self.is_leader = True
        self._watchers: set[asyncio.Future[None]] = set()
        # Appends and flushes from other threads whose loop-side effects are not yet handed over.
        self._thread_appends_pending = False
        self._rolled_meanwhile = False
        self._unflushed_meanwhile = False
        log.on_durable = self._durable_moved
        self._check_invariants()

    # ---- offsets -----------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def high_watermark(self) -> int:
        """The end of what consumers may read: below it, every record is committed. A leader
        with no followers commits what is durable (or, without durable acks, what is in its
        log); both only grow."""
        committed = self.log.durable_offset if self.durable_acks else self.log.log_end_offset
        return max(committed, self.log.log_start_offset)

    @property
    def last_stable_offset(self) -> int:
        """The end of what read_committed consumers may read (Kafka's rule): the first offset
        of the oldest transaction still open, or finished with its marker not yet committed,
        bounded by the high watermark."""
        high_watermark = self.high_watermark
        first_unstable = self.log.first_unstable_offset(high_watermark)
        if first_unstable is None:
            return high_watermark
        return max(min(first_unstable, high_watermark), self.log.log_start_offset)

    def end_offset_for_epoch(self, requested_epoch: int) -> tuple[int, int]:
        """Kafka's leader-epoch cache lookup (OffsetForLeaderEpoch, KIP-320): the largest epoch
        at most `requested_epoch` and the offset where the next epoch starts, the log end
        offset for the latest epoch; (-1, -1) for an epoch above every known one, or when
        nothing was ever appended. This broker never changes a partition's epoch, so its cache
        is one entry, the current epoch from the log's first offset; the answer needs no file
        of its own until leadership can move (replication)."""
        if requested_epoch < 0 or requested_epoch > self.leader_epoch or self.log_end_offset == 0:
            return NO_EPOCH, NO_EPOCH_OFFSET
        if requested_epoch == self.leader_epoch:
            return self.leader_epoch, self.log_end_offset
        # An epoch below the first known one: Kafka answers it with the first epoch's start.
        return requested_epoch, 0

    def offsets(self) -> Offsets:
        return Offsets(self.log_start_offset, self.last_stable_offset, self.high_watermark, self.log_end_offset)

    def _high_watermark_moved(self) -> None:
        """Wakes those waiting for the high watermark to move."""
        self._check_invariants()
        watchers, self._watchers = self._watchers, set()
        for waiter in watchers:
            if not waiter.done():
                waiter.set_result(None)

    def _durable_moved(self, _: int) -> None:
        if self.durable_acks:
            self._high_watermark_moved()

    def _check_invariants(self) -> None:
        offsets = self.offsets()
        assert (
            offsets.log_start_offset <= offsets.last_stable_offset <= offsets.high_watermark <= offsets.log_end_offset
        ), f"{self.topic_partition}: offsets out of order {offsets}"

    # ---- appends -----------------------------------------------------------------------------

    def append_as_leader(
        self, records: bytes | bytearray | memoryview, wait_durable: bool, origin: AppendOrigin = AppendOrigin.CLIENT
    ) -> tuple[Appended, asyncio.Future[None] | None]:
        """Appends (producer rules for clients' batches) and schedules what moves the high
        watermark. With `wait_durable` (acks=all) and durable acks, also returns a future to
        await before answering; a retried batch waits for its original's durability."""
        appended = self.log.append(records, origin)
        if not self.durable_acks:
            self._high_watermark_moved()
            return appended, None
        if wait_durable:
            return appended, self.log.durable_future(appended.last_offset)
        if not appended.duplicate:
            self.log.request_flush()
        return appended, None

    def append_marker(
        self, producer_id: int, epoch: int, coordinator_epoch: int, aborted: bool
    ) -> tuple[Appended, asyncio.Future[None] | None]:
        """Appends a transaction marker (Kafka's WriteTxnMarkers, always acks=all): the offsets,
        and a future done once the marker is committed (None if it is already). Raises
        StorageError (the marker checks, or the log's)."""
        appended = self.log.append_marker(producer_id, epoch, coordinator_epoch, aborted)
        if not self.durable_acks:
            self._high_watermark_moved()
            return appended, None
        return appended, self.log.durable_future(appended.last_offset)

    def aborted_transactions(self, fetch_offset: int, upper_bound: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of the aborted transactions overlapping the range."""
        return self.log.aborted_transactions(fetch_offset, upper_bound)

    def aborted_ranges(self, fetch_offset: int, upper_bound: int) -> list[tuple[int, int, int]]:
        """(producer id, first offset, last offset) of the same."""
        return self.log.aborted_ranges(fetch_offset, upper_bound)

    def append_from_thread(
        self, records: bytes | bytearray | memoryview, loop: asyncio.AbstractEventLoop, durable: bool
    ) -> Appended:
        """`append_as_leader` for a batch without a producer id, from a thread other than the
        event loop's. The append is the native, thread-safe one; with `durable` (and durable
        acks) this thread then runs the group commit's fdatasync itself (it covers every append
        so far; concurrent flushes queue in the engine). What belongs to the loop (a snapshot
        after a roll, releasing the group commit's waiters and the high watermark's watchers, or
        the background flush that moves the high watermark) is handed to `loop`, once per loop
        turn however many appends come meanwhile. Raises StorageError."""
        appended, rolled = self.log.append_plain(records)
        flushed = durable and self.durable_acks
        if flushed and self.log.durable_offset <= appended.last_offset:
            self.log.log.flush()
        self._rolled_meanwhile = self._rolled_meanwhile or rolled
        self._unflushed_meanwhile = self._unflushed_meanwhile or not flushed
        self._hand_over(loop)
        return appended

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """Schedules `_after_thread_appends` unless it is pending, or has nothing to do: no roll,
        everything flushed, and nobody waiting. (Waiters register before they look at the high
        watermark, so one registering after this check finds the new high watermark already.)"""
        idle = not (self._rolled_meanwhile or self._unflushed_meanwhile)
        if idle and not self._watchers and not self.log.group_commit.waiting:
            return
        if not self._thread_appends_pending:
            self._thread_appends_pending = True
            loop.call_soon_threadsafe(self._after_thread_appends)

    def _after_thread_appends(self) -> None:
        self._thread_appends_pending = False
        if self._rolled_meanwhile:
            self._rolled_meanwhile = False
            self.log.snapshot_now()
        self.log.group_commit.released(self.log.durable_offset)  # wakes waiters and watchers
        if self._unflushed_meanwhile:
            self._unflushed_meanwhile = False
            if self.durable_acks:
                self.log.request_flush()  # moves the high watermark soon
            else:
                self._high_watermark_moved()

    def flush_from_thread(self, offset: int, loop: asyncio.AbstractEventLoop) -> None:
        """Makes every offset up to `offset` durable from the calling thread (after an append
        made on the loop); the loop is told as after `append_from_thread`. Raises StorageError."""
        if self.log.durable_offset > offset:
            return  # another flush covered it
        self.log.log.flush()
        self._hand_over(loop)

    # ---- reads -------------------------------------------------------------------------------

    def read(
        self, offset: int, max_bytes: int, upper_bound: int, min_one_batch: bool, wait: bool = True
    ) -> FileSlice | None:
        """Whole verified batches (see `UnifiedLog.read`); `wait=False` on the event loop."""
        return self.log.read(offset, max_bytes, upper_bound, min_one_batch, wait)

    def watch(self, waiter: asyncio.Future[None]) -> None:
        """`waiter` gets a result when the high watermark next moves (long polls, tails). Look
        at the high watermark again after registering: a move just before may not wake it."""
        self._watchers.add(waiter)

    def unwatch(self, waiter: asyncio.Future[None]) -> None:
        self._watchers.discard(waiter)
