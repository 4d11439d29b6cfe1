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
        self.is_leader = True
        self._watchers: set[asyncio.Future[None]] = set()
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
        """The end of what read_committed consumers may read. Without transactions, every
        committed record is stable: the high watermark."""
        return self.high_watermark

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

    # ---- reads -------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, upper_bound: int, min_one_batch: bool) -> FileSlice | None:
        return self.log.read(offset, max_bytes, upper_bound, min_one_batch)

    def watch(self, waiter: asyncio.Future[None]) -> None:
        """`waiter` gets a result when the high watermark next moves (long polls, tails)."""
        self._watchers.add(waiter)

    def unwatch(self, waiter: asyncio.Future[None]) -> None:
        self._watchers.discard(waiter)
