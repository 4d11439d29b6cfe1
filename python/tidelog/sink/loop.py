"""The exactly-once sink: each batch of records is one database transaction that holds both the
user's output and the partitions' next offsets.

    claim ── on assignment: the store increments each partition's owner token and returns the
             stored next offset; the source starts there (Kafka's committed offsets are never
             read back).
    batch ── poll up to `batch_size` records; in one transaction: the user's code writes its
             output, rejected records go to the dead-letter table, and each partition's row
             moves from the expected offset to the source's position with a compare-and-set on
             (owner token, expected offset); then COMMIT.
    fence ── a compare-and-set that changes no row means another process claimed the
             partition: the transaction is rolled back and the partition paused. It is claimed
             again only if the source still assigns it here and its row has not moved for a
             whole wait (the other owner stopped storing batches); while the row moves, the
             other owner keeps it. The wait starts at `reclaim_delay_s` and doubles each time a
             claim is fenced before it stored anything, so two processes given the same
             partitions (static assignment, or a zombie still in the group) settle on one owner
             instead of fencing each other's batches forever.
    unknown ─ a COMMIT whose answer was lost (the connection dropped) is settled by reading the
             rows back: moved to our offsets with our token means it happened.

The stored offset is the source's position after the batch, not the last offset + 1: with
read_committed input the next offsets are past control records and aborted data, and the
compare-and-set compares with the offset the sink remembers, not with the records' offsets.
Rebalance callbacks run inside the source's poll, when no transaction is open, so a partition is
never released with a batch of it half written.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidelog import limits
from tidelog.sink.records import EARLIEST, LATEST, SinkRecord, TopicPartition
from tidelog.sink.sources import Source
from tidelog.sink.store import Claim, OffsetStore

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[SinkRecord], Any], None]
# Called after each batch's commit with the batch's records by partition and the stored offsets.
CommitHook = Callable[[Mapping[TopicPartition, Sequence[SinkRecord]], Mapping[TopicPartition, int]], None]

STARTS = {"earliest": EARLIEST, "latest": LATEST}
OUT_OF_RANGE_POLICIES = ("earliest", "latest", "fail")

_BATCH_SAVEPOINT = "tidelog_batch"
_RECORD_SAVEPOINT = "tidelog_record"


class SinkError(Exception):
    """The sink stopped: a stored offset out of range under the "fail" policy, or the database
    unreachable through every retry."""


@dataclass
class _Waiting:
    """A fenced partition: when to look at its row again, the row as last seen, and the wait."""

    due: float
    seen: Claim | None
    wait_s: float


class _Fenced(Exception):
    def __init__(self, partitions: list[TopicPartition]) -> None:
        super().__init__(partitions)
        self.partitions = partitions


class _Retry(Exception):
    """The batch's transaction did not happen; run it again."""


@dataclass
class SinkStats:
    records: int = 0
    batches: int = 0
    dead_letters: int = 0
    skipped: int = 0  # records read again that the store already had (below the stored offset)
    claims: int = 0
    fenced: int = 0
    resets: list[tuple[TopicPartition, int | None, int]] = field(default_factory=list)
    unknown_commits: int = 0
    retries: int = 0


class ExactlyOnceSink:
    """`handler(records, cursor)` writes a batch's output with `cursor` (the store's database
    cursor, inside the batch's transaction); whatever it raises for a record makes that record a
    dead letter (with `dead_letter=True`) unless the store calls the error transient.

    start: where a partition with no stored offset starts ("earliest" or "latest").
    out_of_range: what a stored offset the log no longer has (retention, a re-created topic)
        does: "earliest" (Kafka Connect's choice for sinks) or "latest" move there and log the
        skipped range (also in `stats.resets`); "fail" stops the sink with SinkError.
    commit_to_kafka: also commit the stored offsets to Kafka, asynchronously, for lag
        dashboards (never read back).
    on_commit: called after each batch's commit (before any Kafka commit).
    """

    def __init__(
        self,
        source: Source,
        store: OffsetStore,
        handler: Handler,
        *,
        batch_size: int = limits.SINK_BATCH_RECORDS_DEFAULT,
        batch_timeout_s: float = limits.SINK_BATCH_TIMEOUT_S,
        dead_letter: bool = True,
        start: str = "earliest",
        out_of_range: str = "earliest",
        commit_to_kafka: bool = False,
        on_commit: CommitHook | None = None,
        reclaim_delay_s: float = limits.SINK_RECLAIM_DELAY_S,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if start not in STARTS:
            raise ValueError(f"start must be one of {sorted(STARTS)}, not {start!r}")
        if out_of_range not in OUT_OF_RANGE_POLICIES:
            raise ValueError(f"out_of_range must be one of {OUT_OF_RANGE_POLICIES}, not {out_of_range!r}")
        self.source = source
        self.store = store
        self.handler = handler
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self.dead_letter_enabled = dead_letter
        self.start_at = STARTS[start]
        self.out_of_range_policy = out_of_range
        self.commit_to_kafka = commit_to_kafka
        self.on_commit = on_commit
        self.reclaim_delay_s = reclaim_delay_s
        self.stats = SinkStats()
        self._owned: dict[TopicPartition, Claim] = {}
        # The lowest offset a record may have to be stored: the stored offset, or where an
        # out-of-range reset moved the source (below the stored offset after a re-created topic,
        # while the compare-and-set still expects the stored one).
        self._floor: dict[TopicPartition, int] = {}
        self._fenced: dict[TopicPartition, _Waiting] = {}
        # The wait before the next re-claim of a partition: doubled by a claim fenced before it
        # stored a batch, back to `reclaim_delay_s` when one is stored.
        self._reclaim_wait: dict[TopicPartition, float] = {}
        self._stored_since_claim: set[TopicPartition] = set()
        self._started = False
        self._failure: BaseException | None = None

    # ---- running -------------------------------------------------------------------------------

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        idle_timeout_s: float | None = None,
        max_records: int | None = None,
    ) -> SinkStats:
        """Runs until `stop` is set, `idle_timeout_s` passes without a record, or `max_records`
        are stored. Returns the statistics (also in `stats`)."""
        if not self._started:
            self._started = True
            self.source.start(self)
        idle_since = time.monotonic()
        while not (stop is not None and stop.is_set()):
            if max_records is not None and self.stats.records >= max_records:
                break
            self._reclaim_due()
            records = self.source.poll(self.batch_size, self.batch_timeout_s)
            if self._failure is not None:
                raise self._failure
            if records and self.write(records):
                idle_since = time.monotonic()
                continue
            if not records:
                self._store_idle_positions()
            if idle_timeout_s is not None and time.monotonic() - idle_since >= idle_timeout_s:
                break
        return self.stats

    def close(self) -> None:
        """Leaves the group (its revocation runs with no transaction open) and closes the store."""
        try:
            self.source.close()
        finally:
            self.store.close()

    def __enter__(self) -> ExactlyOnceSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def owned(self) -> dict[TopicPartition, Claim]:
        """The partitions this process owns now, with their tokens and stored offsets."""
        return dict(self._owned)

    # ---- the source's callbacks ----------------------------------------------------------------

    def assigned(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        claims = self._with_retries(lambda: self.store.claim(partitions), "claim")
        self.stats.claims += len(claims)
        starts: dict[TopicPartition, int] = {}
        for partition, claim in claims.items():
            self._owned[partition] = claim
            self._fenced.pop(partition, None)
            self._stored_since_claim.discard(partition)
            self._floor.pop(partition, None)
            if claim.next_offset is not None:
                self._floor[partition] = claim.next_offset
            starts[partition] = self.start_at if claim.next_offset is None else claim.next_offset
        log.info("claimed %s", ", ".join(f"{t}-{p}@{starts[(t, p)]}" for t, p in sorted(claims)))
        return starts

    def revoked(self, partitions: Sequence[TopicPartition], lost: bool) -> None:
        for partition in partitions:
            self._owned.pop(partition, None)
            self._fenced.pop(partition, None)
            self._reclaim_wait.pop(partition, None)
            self._floor.pop(partition, None)
        if partitions:
            log.info("%s %s", "lost" if lost else "released", ", ".join(f"{t}-{p}" for t, p in sorted(partitions)))

    def resume_offset(self, partition: TopicPartition) -> int:
        position = self.source.position(partition)
        if position is not None:
            return position
        floor = self._floor.get(partition)
        return self.start_at if floor is None else floor

    def out_of_range(self, partition: TopicPartition) -> None:
        claim = self._owned.get(partition)
        if claim is None:
            return  # not ours (revoked, or fenced: its claim seeks again)
        stored = claim.next_offset
        low, high = self.source.watermarks(partition)
        if self.out_of_range_policy == "fail":
            self._failure = SinkError(
                f"{partition[0]}-{partition[1]}: stored offset {stored} is out of range "
                f"(the log holds {low}..{high}); set out_of_range='earliest' or 'latest' to move on"
            )
            return
        target = low if self.out_of_range_policy == "earliest" else high
        log.warning(
            "%s-%d: stored offset %s is out of range (the log holds %d..%d): moving to %d (%s); "
            "records between were never stored",
            partition[0],
            partition[1],
            stored,
            low,
            high,
            target,
            self.out_of_range_policy,
        )
        self.stats.resets.append((partition, stored, target))
        self._floor[partition] = target
        self.source.seek(partition, target)

    # ---- batches -------------------------------------------------------------------------------

    def write(self, records: Sequence[SinkRecord]) -> bool:
        """Stores one polled batch exactly once; False if none of it was ours to store."""
        by_partition: dict[TopicPartition, list[SinkRecord]] = {}
        for record in records:
            partition = (record.topic, record.partition)
            claim = self._owned.get(partition)
            if claim is None:
                continue  # revoked or fenced meanwhile: its next owner reads it from the store
            floor = self._floor.get(partition)
            if floor is not None and record.offset < floor:
                self.stats.skipped += 1
                continue
            by_partition.setdefault(partition, []).append(record)
        if not by_partition:
            return False
        positions: dict[TopicPartition, int] = {}
        for partition, batch in by_partition.items():
            position = self.source.position(partition)
            after_last = batch[-1].offset + 1
            positions[partition] = after_last if position is None or position < after_last else position
        return self._store(by_partition, positions, "batch")

    def _store(
        self, by_partition: dict[TopicPartition, list[SinkRecord]], positions: dict[TopicPartition, int], what: str
    ) -> bool:
        """Runs the batch's transaction until it commits for the partitions still owned; False
        if every partition was fenced."""
        while by_partition:
            try:
                self._with_retries(lambda: self._transaction(by_partition, positions), what)
                return True
            except _Fenced as fenced:
                self._fence(fenced.partitions)
                for partition in fenced.partitions:
                    by_partition.pop(partition, None)
        return False

    def _store_idle_positions(self) -> None:
        """With nothing to read, stores positions that moved past the stored offsets without a
        record (past a transaction's marker, or aborted data): the stored offset is then the
        consumer's position, as a lag dashboard expects. Offsets only, no user code."""
        moved: dict[TopicPartition, list[SinkRecord]] = {}
        positions: dict[TopicPartition, int] = {}
        for partition, claim in self._owned.items():
            if claim.next_offset is None:
                continue  # nothing stored yet: the first batch stores its position
            position = self.source.position(partition)
            if position is not None and position > self._floor.get(partition, claim.next_offset):
                moved[partition] = []
                positions[partition] = position
        self._store(moved, positions, "positions")

    def _transaction(
        self, by_partition: dict[TopicPartition, list[SinkRecord]], positions: dict[TopicPartition, int]
    ) -> None:
        store = self.store
        cursor = store.begin()
        try:
            records = [r for batch in by_partition.values() for r in batch]
            dead = self._apply(cursor, records) if records else 0
            lost = [
                partition
                for partition in by_partition
                if not store.advance(
                    cursor,
                    partition,
                    self._owned[partition].token,
                    self._owned[partition].next_offset,
                    positions[partition],
                )
            ]
            if lost:
                raise _Fenced(lost)  # rolled back below
        except BaseException:
            store.rollback()
            raise
        try:
            store.commit()
        except Exception as error:
            if not store.is_transient(error):
                store.rollback()
                raise
            self._settle_unknown_commit(by_partition, positions, error)
        self._stored(by_partition, positions, dead)

    def _apply(self, cursor: Any, records: list[SinkRecord]) -> int:
        """Runs the user's code on the whole batch; if it rejects the batch, on each record
        alone, and the ones it rejects become dead letters. Returns how many did."""
        store = self.store
        store.savepoint(cursor, _BATCH_SAVEPOINT)
        try:
            self.handler(records, cursor)
            store.release(cursor, _BATCH_SAVEPOINT)
            return 0
        except Exception as error:
            if store.is_transient(error) or not self.dead_letter_enabled:
                raise
            store.rollback_to(cursor, _BATCH_SAVEPOINT)
        dead = 0
        for record in records:
            store.savepoint(cursor, _RECORD_SAVEPOINT)
            try:
                self.handler([record], cursor)
                store.release(cursor, _RECORD_SAVEPOINT)
            except Exception as error:
                if store.is_transient(error):
                    raise
                store.rollback_to(cursor, _RECORD_SAVEPOINT)
                store.dead_letter(cursor, record, error)
                log.warning("%s-%d@%d: a dead letter: %r", record.topic, record.partition, record.offset, error)
                dead += 1
        return dead

    def _settle_unknown_commit(
        self,
        by_partition: dict[TopicPartition, list[SinkRecord]],
        positions: dict[TopicPartition, int],
        error: BaseException,
    ) -> None:
        """The COMMIT's answer was lost. Reads the rows back (retrying on a new connection):
        moved to our offsets under our token, it happened; else it did not."""
        self.stats.unknown_commits += 1
        log.warning("commit answer lost (%s): reading the offsets back", error)
        self.store.close()
        rows = self._with_retries(lambda: self.store.read(list(by_partition)), "read back")
        committed = any(
            (row := rows.get(partition)) is not None
            and row.token == self._owned[partition].token
            and row.next_offset == positions[partition]
            for partition in by_partition
        )
        if committed:
            return
        lost = [
            partition
            for partition in by_partition
            if (row := rows.get(partition)) is None or row.token != self._owned[partition].token
        ]
        if lost:
            raise _Fenced(lost)
        raise _Retry()

    def _stored(
        self, by_partition: dict[TopicPartition, list[SinkRecord]], positions: dict[TopicPartition, int], dead: int
    ) -> None:
        for partition in by_partition:
            self._owned[partition] = Claim(self._owned[partition].token, positions[partition])
            self._floor[partition] = positions[partition]
            self._stored_since_claim.add(partition)
            self._reclaim_wait.pop(partition, None)
        records = sum(len(batch) for batch in by_partition.values())
        if not records:
            return  # positions only (past markers): no batch for the hooks
        self.stats.batches += 1
        self.stats.records += records
        self.stats.dead_letters += dead
        if self.on_commit is not None:
            self.on_commit(by_partition, positions)
        if self.commit_to_kafka:
            self.source.commit_async(positions)

    # ---- fencing and retries -------------------------------------------------------------------

    def _fence(self, partitions: list[TopicPartition]) -> None:
        """Another process claimed `partitions`: stop reading them, note their rows as they are
        now, and look again after the wait (see `_reclaim_due`)."""
        now = time.monotonic()
        rows = self._with_retries(lambda: self.store.read(partitions), "read fenced rows")
        for partition in partitions:
            self.stats.fenced += 1
            self._owned.pop(partition, None)
            self._floor.pop(partition, None)
            wait_s = self._reclaim_wait.get(partition, self.reclaim_delay_s)
            if partition not in self._stored_since_claim and partition in self._reclaim_wait:
                wait_s = min(wait_s * 2, limits.SINK_RECLAIM_DELAY_MAX_S)  # our last claim won nothing
            self._reclaim_wait[partition] = wait_s
            self._fenced[partition] = _Waiting(now + _jittered(wait_s), rows.get(partition), wait_s)
            self.source.pause(partition)
            log.warning("%s-%d: fenced (another process claimed it); batch rolled back", *partition)

    def _reclaim_due(self) -> None:
        """Claims a fenced partition again if the source still assigns it here and its row did
        not move during the wait; a row that moved has a live owner, so the wait starts over."""
        if not self._fenced:
            return
        now = time.monotonic()
        due = [partition for partition, waiting in self._fenced.items() if waiting.due <= now]
        if not due:
            return
        assigned = self.source.assignment()
        for partition in due:
            if partition not in assigned:
                del self._fenced[partition]
        due = [partition for partition in due if partition in assigned]
        if not due:
            return
        rows = self._with_retries(lambda: self.store.read(due), "read fenced rows")
        again: list[TopicPartition] = []
        for partition in due:
            waiting = self._fenced[partition]
            row = rows.get(partition)
            if row != waiting.seen:
                waiting.seen = row  # the other owner stored a batch meanwhile: it keeps the partition
                waiting.due = now + _jittered(waiting.wait_s)
                continue
            del self._fenced[partition]
            again.append(partition)
        if not again:
            return
        for partition, start in self.assigned(again).items():
            self.source.seek(partition, start)
            self.source.resume(partition)

    def _with_retries(self, step: Callable[[], Any], what: str) -> Any:
        delay = limits.SINK_STORE_BACKOFF_S
        for attempt in range(1, limits.SINK_STORE_ATTEMPTS + 1):
            try:
                return step()
            except _Retry:
                self.stats.retries += 1
            except Exception as error:
                if not self.store.is_transient(error):
                    raise
                self.stats.retries += 1
                if attempt == limits.SINK_STORE_ATTEMPTS:
                    raise SinkError(f"{what}: the database failed {attempt} times; last: {error}") from error
                log.warning("%s: %s (attempt %d, retrying in %.2f s)", what, error, attempt, delay)
                self.store.rollback()
                self.store.close()
                time.sleep(delay)
                delay = min(delay * 2, limits.SINK_STORE_BACKOFF_MAX_S)
        raise SinkError(f"{what}: did not complete in {limits.SINK_STORE_ATTEMPTS} attempts")


def _jittered(wait_s: float) -> float:
    """A wait spread by ±RECLAIM_JITTER so processes that were fenced together look apart."""
    spread = limits.SINK_RECLAIM_JITTER
    return wait_s * random.uniform(1 - spread, 1 + spread)
