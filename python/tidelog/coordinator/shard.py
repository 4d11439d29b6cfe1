"""One partition of `__consumer_offsets` and the groups it holds.

The durable state of a group (its committed offsets, its last completed generation, whether it
exists at all) changes only in `replay`, which applies one record. Loading after a restart calls
it for every record in the log; a live write calls it for the records it wrote once they are
durable, in log order. So what a client is told and what a restart rebuilds cannot differ.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from tidelog import limits
from tidelog.coordinator import records
from tidelog.coordinator.group import ClassicGroup, GroupState
from tidelog.protocol.record_batch import RecordDecodeError, build_batch, decode_batch, iter_batches

log = logging.getLogger(__name__)

# (key, value) of one record; a None value is a tombstone.
KeyValue = tuple[bytes, bytes | None]


class OffsetsLog(Protocol):
    """What a shard needs of its partition log; the server supplies it."""

    def append(self, batch: bytes) -> Awaitable[None]:
        """Appends one batch; the awaitable completes once it is durable (raises if it cannot be)."""

    def read_chunk(self, offset: int, max_bytes: int) -> tuple[bytes, int]:
        """Whole batches from `offset` (bytes, and the log end offset)."""

    @property
    def log_start_offset(self) -> int: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Shard:
    def __init__(self, index: int, offsets_log: OffsetsLog, on_group_loaded: Callable[[ClassicGroup], None]) -> None:
        self.index = index
        self.log = offsets_log
        self.loading = True
        self.groups: dict[str, ClassicGroup] = {}
        self._on_group_loaded = on_group_loaded
        self._unapplied: collections.deque[tuple[asyncio.Future[None], list[KeyValue]]] = collections.deque()
        self.records_loaded = 0

    # ---- the one way durable state changes ------------------------------------------------

    def replay(self, key_bytes: bytes, value: bytes | memoryview | None) -> None:
        key = records.parse_key(bytes(key_bytes))
        if isinstance(key, records.OffsetKey):
            group = self.groups.get(key.group)
            if value is None:
                if group is not None:
                    group.offsets.pop((key.topic, key.partition), None)
                return
            if group is None:
                group = self.groups[key.group] = ClassicGroup(key.group, now_ms())
            group.offsets[(key.topic, key.partition)] = records.parse_offset_value(value)
        elif isinstance(key, records.GroupKey):
            group = self.groups.get(key.group)
            if value is None:
                if group is not None:
                    group.move_to(GroupState.DEAD, now_ms())
                    del self.groups[key.group]
                return
            stored = records.parse_group_value(value)
            if group is None:
                group = self.groups[key.group] = ClassicGroup(key.group, now_ms())
            group.stored = stored
            if self.loading:
                group.load_stored(stored)
            # Live, the members in memory wrote this record and are already at or past it.

    # ---- writes ----------------------------------------------------------------------------

    async def write(self, key_values: list[KeyValue]) -> None:
        """Appends the records as one batch, waits until durable, then replays them.
        Raises if the append or its flush fails; nothing is replayed then."""
        timestamp = now_ms()
        batch = build_batch([(timestamp, key, value, ()) for key, value in key_values])
        durable = asyncio.ensure_future(self.log.append(batch))
        self._unapplied.append((durable, key_values))
        # Replayed from the future's callback, so a caller that goes away (its connection
        # closed) does not leave a durable write unapplied.
        durable.add_done_callback(lambda _: self._apply_durable())
        await asyncio.shield(durable)

    def _apply_durable(self) -> None:
        """Replays finished writes from the oldest on, so records apply in log order."""
        while self._unapplied and self._unapplied[0][0].done():
            durable, key_values = self._unapplied.popleft()
            if durable.cancelled() or durable.exception() is not None:
                continue
            for key, value in key_values:
                self.replay(key, value)

    # ---- load ------------------------------------------------------------------------------

    async def load(self) -> None:
        """Replays the whole partition, yielding to the event loop between chunks so other
        requests are served (with COORDINATOR_LOAD_IN_PROGRESS for this shard's groups)."""
        offset = self.log.log_start_offset
        while True:
            chunk, log_end = self.log.read_chunk(offset, limits.COORDINATOR_LOAD_CHUNK_BYTES)
            if not chunk:
                break
            offset = self._replay_chunk(chunk, offset)
            if offset >= log_end:
                break
            await asyncio.sleep(0)
        self.loading = False
        for group in self.groups.values():
            self._on_group_loaded(group)

    def _replay_chunk(self, chunk: bytes, offset: int) -> int:
        for header, batch in iter_batches(chunk):
            if header.is_control:  # transaction markers carry no group state yet
                offset = header.last_offset + 1
                continue
            try:
                _, decoded = decode_batch(batch)
            except RecordDecodeError as error:  # compressed or damaged: the log checked its CRC
                log.error("__consumer_offsets-%d: batch at %d unreadable: %s", self.index, header.base_offset, error)
                offset = header.last_offset + 1
                continue
            for record_offset, _, key, value, _ in decoded:
                if key is None:
                    continue
                try:
                    self.replay(key, value)
                except records.CoordinatorRecordError as error:  # one bad record must not stop the load
                    log.error("__consumer_offsets-%d: record at %d skipped: %s", self.index, record_offset, error)
                self.records_loaded += 1
            offset = header.last_offset + 1
        return offset
