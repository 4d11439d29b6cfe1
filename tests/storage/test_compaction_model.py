"""The log cleaner against a model (issue 15): random keyed appends, tombstones, idempotent and
transactional batches, commits and aborts, cleaning passes, a clock that moves past
`delete.retention.ms`, clean reopens and crash images. After every step that changes the log:

- every record still in the log is the one the model wrote at that offset (nothing altered),
  and offsets strictly increase;
- nothing but superseded records, aborted records and tombstones past `delete.retention.ms`
  disappears, and per key the newest value a read_committed reader sees is unchanged;
- after a pass, every record it could remove is gone (a superseded record whose newer value is
  also below the pass's end, an aborted record below it): a cleaner that keeps everything fails;
- cleaning never moves the last stable offset, and a reopen gives the same one.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import build_batch, decode_batch, iter_batches
from tidelog.storage import Cleaner, LogManager, TopicPartition, UnifiedLog
from tidelog.storage.unified_log import now_ms

TOPIC = "compacted"
PARTITION = TopicPartition(TOPIC, 0)
DELETE_RETENTION_MS = 1000
KEYS = [f"k{i}".encode() for i in range(6)]
TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "internal.segment.bytes": "700",
    "index.interval.bytes": "100",
    "delete.retention.ms": str(DELETE_RETENTION_MS),
    "min.cleanable.dirty.ratio": "0",
    "retention.ms": "-1",
}
IDEMPOTENT_PID = 7000
TXN_PIDS = (8000, 8001)
COORDINATOR_EPOCH = 0


@dataclass
class Written:
    offset: int
    key: bytes
    value: bytes | None
    producer_id: int  # -1: plain; a transactional one in TXN_PIDS
    txn: int | None  # the model's transaction number, for transactional records
    written_at: int  # the model clock


@dataclass
class Model:
    records: dict[int, Written] = field(default_factory=dict)
    txn_outcome: dict[int, bool] = field(default_factory=dict)  # txn number -> committed
    open_txn: dict[int, int] = field(default_factory=dict)  # producer id -> txn number

    def aborted(self, written: Written) -> bool:
        return written.txn is not None and self.txn_outcome.get(written.txn) is False

    def decided(self, written: Written) -> bool:
        return written.txn is None or written.txn in self.txn_outcome

    def superseded(self, written: Written, below: int | None = None) -> bool:
        """A newer record of the same key that is not aborted and whose transaction ended (the
        cleaner cleans only below the last stable offset), below `below` if given."""
        return any(
            other.offset > written.offset
            and other.key == written.key
            and not self.aborted(other)
            and self.decided(other)
            and (below is None or other.offset < below)
            for other in self.records.values()
        )


def log_records(log: UnifiedLog, upper_bound: int | None = None) -> list[tuple[int, bytes | None, bytes | None, int]]:
    """(offset, key, value, producer id) of every data record in the log, control batches skipped."""
    out = []
    offset = log.log_start_offset
    end = log.log_end_offset if upper_bound is None else upper_bound
    while offset < end:
        chunk = log.read(offset, 1 << 20, end)
        if chunk is None:
            break
        for header, batch in iter_batches(chunk.read()):
            offset = header.last_offset + 1
            if header.is_control:
                continue
            _, records = decode_batch(batch)
            out += [(o, k, v, header.producer_id) for o, _, k, v, _ in records]
    return out


def copy_if_present(source: str, target: str) -> None:
    """copytree's copy of one file of a live log: a file the log removes meanwhile (an old
    producer snapshot, in its flush thread) is left out, as a crash after the removal leaves it."""
    try:
        shutil.copy2(source, target)
    except FileNotFoundError:
        pass


class CompactionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="tidelog-compaction-"))
        self.directory = self.root / "data"
        self.manager = LogManager.open(self.directory, TopicConfig())
        self.manager.create_topic(TOPIC, 1, TOPIC_CONFIG)
        self.model = Model()
        self.clock = now_ms()
        self.cleaner = Cleaner(1 << 20)
        self.sequence = 0
        self.txn_numbers = 0
        self.txn_sequences = {pid: 0 for pid in TXN_PIDS}
        self.images = 0

    @property
    def log(self) -> UnifiedLog:
        return self.manager.partitions[PARTITION]

    def teardown(self) -> None:
        self.manager.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _record(self, appended_first: int, items: list[tuple[bytes, bytes | None]], pid: int, txn: int | None) -> None:
        for index, (key, value) in enumerate(items):
            offset = appended_first + index
            self.model.records[offset] = Written(offset, key, value, pid, txn, self.clock)

    @staticmethod
    def _inputs(items: list[tuple[bytes, bytes | None]]) -> list[tuple[int, bytes, bytes | None, list[object]]]:
        timestamp = now_ms()
        return [(timestamp, key, value, []) for key, value in items]

    items = st.lists(
        st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(min_size=1, max_size=30))),
        min_size=1,
        max_size=4,
    )

    @rule(items=items)
    def append_plain(self, items: list[tuple[bytes, bytes | None]]) -> None:
        appended = self.log.append(build_batch(self._inputs(items)))  # type: ignore[arg-type]
        self._record(appended.first_offset, items, -1, None)

    @rule(items=items)
    def append_idempotent(self, items: list[tuple[bytes, bytes | None]]) -> None:
        batch = build_batch(
            self._inputs(items),  # type: ignore[arg-type]
            producer_id=IDEMPOTENT_PID,
            producer_epoch=0,
            base_sequence=self.sequence,
        )
        appended = self.log.append(batch)
        self.sequence += len(items)
        self._record(appended.first_offset, items, -1, None)

    @rule(pid=st.sampled_from(TXN_PIDS), items=items)
    def append_transactional(self, pid: int, items: list[tuple[bytes, bytes | None]]) -> None:
        if pid not in self.model.open_txn:
            self.txn_numbers += 1
            self.model.open_txn[pid] = self.txn_numbers
        batch = build_batch(
            self._inputs(items),  # type: ignore[arg-type]
            producer_id=pid,
            producer_epoch=0,
            base_sequence=self.txn_sequences[pid],
            transactional=True,
        )
        appended = self.log.append(batch)
        self.txn_sequences[pid] += len(items)
        self._record(appended.first_offset, items, pid, self.model.open_txn[pid])

    @precondition(lambda self: bool(self.model.open_txn))
    @rule(data=st.data(), commit=st.booleans())
    def end_transaction(self, data: st.DataObject, commit: bool) -> None:
        pid = data.draw(st.sampled_from(sorted(self.model.open_txn)))
        self.log.append_marker(pid, 0, COORDINATOR_EPOCH, aborted=not commit)
        self.model.txn_outcome[self.model.open_txn.pop(pid)] = commit

    @rule()
    def roll(self) -> None:
        self.log.log.roll()

    @rule()
    def advance_clock(self) -> None:
        self.clock += DELETE_RETENTION_MS + 1

    def _upper_bound(self) -> int:
        self.log.log.flush()
        durable = self.log.durable_offset
        first_unstable = self.log.first_unstable_offset(durable)
        return durable if first_unstable is None else min(first_unstable, durable)

    @rule()
    def clean(self) -> None:
        bound = self._upper_bound()
        before = self.log.first_unstable_offset(self.log.durable_offset)
        report = self.manager.clean(self.cleaner, PARTITION, bound, self.log.active_producers())
        # The pass never touches what it may not clean, nor moves the last stable offset.
        assert self.log.first_unstable_offset(self.log.durable_offset) == before
        if report is None:
            return
        assert report.end_offset <= bound
        present = {offset for offset, *_ in log_records(self.log)}
        for written in self.model.records.values():
            if written.offset >= report.end_offset:
                continue
            if self.model.aborted(written):
                assert written.offset not in present, f"aborted record {written} outlived the pass"
            elif self.model.superseded(written, below=report.end_offset):
                assert written.offset not in present, f"superseded record {written} outlived the pass"

    @rule()
    def reopen(self) -> None:
        bound_before = self._upper_bound()
        self.manager.close()
        self.manager = LogManager.open(self.directory, TopicConfig())
        assert self._upper_bound() == bound_before

    @rule()
    def open_crash_image(self) -> None:
        """A copy of the directory while the log is open (everything flushed): what a crash
        leaves. It must open and hold what the live log holds."""
        self.log.log.flush()
        expected = log_records(self.log)
        self.images += 1
        image = self.root / f"image-{self.images}"
        shutil.copytree(self.directory, image, ignore=shutil.ignore_patterns(".lock"), copy_function=copy_if_present)
        copy = LogManager.open(image, TopicConfig())
        try:
            assert log_records(copy.partitions[PARTITION]) == expected
        finally:
            copy.close()
            shutil.rmtree(image)

    @invariant()
    def nothing_but_superseded_records_disappears(self) -> None:
        found = log_records(self.log)
        offsets = [offset for offset, *_ in found]
        assert offsets == sorted(set(offsets)), "offsets must strictly increase"
        present = {}
        for offset, key, value, _ in found:
            written = self.model.records.get(offset)
            assert written is not None, f"offset {offset} was never written"
            assert (key, value) == (written.key, written.value), f"offset {offset} changed"
            present[offset] = written
        for written in self.model.records.values():
            if written.offset in present or self.model.aborted(written) or self.model.superseded(written):
                continue
            assert written.value is None, f"latest value {written} disappeared"
            assert self.clock - written.written_at >= DELETE_RETENTION_MS, f"tombstone {written} went too early"

    @invariant()
    def read_committed_latest_per_key_is_unchanged(self) -> None:
        bound = self._upper_bound()
        aborted = self.log.aborted_ranges(self.log.log_start_offset, bound)
        seen: dict[bytes, tuple[int, bytes | None]] = {}
        for offset, key, value, pid in log_records(self.log, bound):
            if any(pid == a_pid and first <= offset <= last for a_pid, first, last in aborted):
                continue
            assert key is not None
            seen[key] = (offset, value)
        expected: dict[bytes, tuple[int, bytes | None]] = {}
        for written in sorted(self.model.records.values(), key=lambda w: w.offset):
            if written.offset < bound and not self.model.aborted(written):
                expected[written.key] = (written.offset, written.value)
        for key, (offset, value) in expected.items():
            if key in seen:
                assert seen[key] == (offset, value), f"key {key!r}: {seen[key]} instead of {(offset, value)}"
            else:  # only a tombstone past its retention may go with its key
                assert value is None and self.clock - self.model.records[offset].written_at >= DELETE_RETENTION_MS


TestCompaction = CompactionMachine.TestCase
TestCompaction.settings = settings(
    max_examples=30, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
