"""Opens one crash state with the real engine and checks it against what was acknowledged.

Outcomes: ok; refused (CorruptLogError on open); open_error (any other exception on open);
acked_loss (an offset acknowledged durable is missing or changed, an acknowledged topic is gone,
or a retry of an acknowledged idempotent batch is not deduplicated); corrupt_read (a served
batch fails its CRC-32C, holds a value that is not the one written at its offset, or offsets
are not contiguous); resurrected (an acknowledged delete came back: a deleted topic, records
below an acknowledged log start, or a recreated topic that starts with the old data);
broken_after (the recovered log refuses a new append and flush); gap (offsets never
acknowledged are missing inside the log: a hole below the log end); retry_refused (a retry of
a producer's newest batch is refused as out of order); phantom_duplicate (a retry of a batch
is answered as a duplicate at offsets the log does not hold: the producer is told that records
lost in the crash are stored).

Transactions (the txn scenario; read_committed as a consumer gets it: the last stable offset of
the core's Partition and the aborted transactions of `.txnindex`): lso_past_open (the LSO lies
past the first offset of a transaction whose marker is not in the log: open data served to
read_committed consumers); lso_stuck (after a flush, the LSO stays below a transaction whose
marker is in the log: decided data held back); abort_exposed (an aborted transaction whose
marker is in the log is missing from, or misplaced in, what `collect_aborted_txns` gives a
fetch of its data: read_committed consumers would get aborted records); txnindex_phantom (an
aborted-transaction entry whose ABORT marker is not in the log, or names a COMMIT). An
acknowledged marker missing is acked_loss; a control batch that is not the marker written at
its offset is corrupt_read; ending the transactions left open (as the coordinator does after a
restart: a retried marker, or a timeout abort with an epoch bump) must work and bring the LSO to
the high watermark, else broken_after.

Compacted topics (the compact scenario, `check_compact_partition`): offsets may have gaps and
records may go, so instead of contiguity: offsets strictly increase and every record served is
the one written at its offset (key, value or tombstone, producer) or corrupt_read; an
acknowledged record missing must be superseded (a tombstone, aborted, or a later committed
record of its key is in the log or acknowledged) or acked_loss; the read_committed view below
the LSO holds, per key, exactly the latest committed record written (a key whose latest is a
tombstone may be absent), else acked_loss (a key lost) or resurrected (an older value shows
through); the last acknowledged batch of each idempotent producer is still in the log and a
retry of it is a duplicate; `.cleaned` / `.swap` files left after the open are leftover; a
segment file holding batches out of its range (old segments left beside the cleaned one that
replaced them) is segments_mixed.
"""

from __future__ import annotations

import bisect
import dataclasses
import uuid
from collections import defaultdict
from pathlib import Path

from tests.conftest import segment_batches
from tests.crash.workload import (
    TOPIC_OVERRIDES,
    TXN_COORDINATOR_EPOCH,
    batch_for,
    keyed_batch,
    parse_key_spec,
    value_of,
)
from tidelog.config import TopicConfig
from tidelog.core.partition import Partition
from tidelog.protocol.record_batch import (
    RecordDecodeError,
    decode_batch,
    iter_batches,
    parse_control_record,
)
from tidelog.storage import CorruptLogError, PartitionLog
from tidelog.storage.log_manager import LogManager
from tidelog.storage.producer_state import ProducerStateError
from tidelog.storage.unified_log import TopicPartition, UnifiedLog


@dataclasses.dataclass
class Incarnation:
    name: str
    gen: int
    topic_id: str
    partitions: int
    created_at: int  # op index of its topic+ marker
    delete_started_at: int | None = None
    deleted_at: int | None = None


@dataclasses.dataclass
class Txn:
    """One transaction of one producer on one partition, as far as the markers before the crash
    point tell (the marker's offset is looked ahead when its append was under way)."""

    pid: int
    batches: list[tuple[int, int]]  # (first, last) offsets of its data batches here
    kind: str | None = None  # "COMMIT" / "ABORT" once the marker's append started
    epoch: int = 0  # the marker's producer epoch
    marker_offset: int | None = None
    appended: bool = False  # append_marker returned

    @property
    def first(self) -> int | None:
        return self.batches[0][0] if self.batches else None


@dataclasses.dataclass(frozen=True)
class Written:
    """A keyed record as the workload appended it (compact scenario)."""

    key: str
    tombstone: bool
    producer_id: int  # -1: a plain batch
    transactional: bool


@dataclasses.dataclass
class Expected:
    """What had been acknowledged before the crash point."""

    markers_seen: int
    present: list[Incarnation]  # created (acked), deletion not started: must be there
    gone: list[Incarnation]  # deletion acked
    incarnations: dict[str, Incarnation]  # by topic id: every one in the whole recording
    acked: dict[tuple[str, int, int], int]  # (name, gen, partition) -> durable offset
    lso: dict[tuple[str, int, int], tuple[int, int]]  # -> (acked log start, highest possible)
    last_batches: dict[tuple[str, int, int], dict[int, tuple[int, int, int, int, int]]]
    newest_batches: dict[tuple[str, int, int], dict[int, tuple[int, int, int, int, int]]]
    names: set[str]  # every topic name created so far
    txns: dict[tuple[str, int, int], list[Txn]]
    # Every marker of the whole recording: key -> offset -> (producer id, epoch, kind).
    markers_written: dict[tuple[str, int, int], dict[int, tuple[int, int, str]]]
    # Every keyed record of the whole recording: key -> offset -> what was written there.
    keyed: dict[tuple[str, int, int], dict[int, Written]] = dataclasses.field(default_factory=dict)


class Expectations:
    """Reads the markers of an op log once; `at(k)` is what was acknowledged before op k."""

    def __init__(self, ops: list[list[str]]) -> None:
        self.markers: list[tuple[int, list[str]]] = [(i, op[1].split()) for i, op in enumerate(ops) if op[0] == "M"]
        self.positions = [i for i, _ in self.markers]
        self.incarnations: dict[str, Incarnation] = {}
        gens: dict[str, Incarnation] = {}
        self.markers_written: dict[tuple[str, int, int], dict[int, tuple[int, int, str]]] = defaultdict(dict)
        self.marker_offset_of: dict[int, int] = {}  # index of a marker? -> offset of its marker
        self.keyed: dict[tuple[str, int, int], dict[int, Written]] = defaultdict(dict)
        starting: dict[tuple[str, int, int], int] = {}
        for index, (at, words) in enumerate(self.markers):
            if words[0] in ("marker?", "marker"):
                key = (words[1], gens[words[1]].gen, int(words[2]))
                pid, epoch = int(words[3]), int(words[4])
                if words[0] == "marker?":
                    starting[(*key, pid)] = index  # type: ignore[arg-type]
                else:
                    self.markers_written[key][int(words[6])] = (pid, epoch, words[5])
                    self.marker_offset_of[starting.pop((*key, pid))] = int(words[6])  # type: ignore[arg-type]
            if words[0] == "keys":
                written = self.keyed[(words[1], gens[words[1]].gen, int(words[2]))]
                first, pid, transactional = int(words[3]), int(words[4]), words[5] == "1"
                for i, (record_key, tombstone) in enumerate(parse_key_spec(words[6])):
                    written[first + i] = Written(record_key, tombstone, pid, transactional)
            if words[0] == "topic+":
                incarnation = Incarnation(words[1], int(words[2]), words[3], int(words[4]), at)
                self.incarnations[words[3]] = incarnation
                gens[words[1]] = incarnation
            elif words[0] == "topic-?":
                gens[words[1]].delete_started_at = at
            elif words[0] == "topic-":
                gens[words[1]].deleted_at = at

    def at(self, k: int) -> Expected:
        """Markers at op index < k (ops[:k] happened)."""
        seen = bisect.bisect_left(self.positions, k)
        current: dict[str, Incarnation] = {}
        acked: dict[tuple[str, int, int], int] = {}
        lso: dict[tuple[str, int, int], tuple[int, int]] = {}
        pending_retention: set[tuple[str, int, int]] = set()
        batches: dict[tuple[str, int, int], list[tuple[int, int, int, int, int, int]]] = defaultdict(list)
        names: set[str] = set()
        txns: dict[tuple[str, int, int], list[Txn]] = defaultdict(list)
        open_txns: dict[tuple[str, int, int, int], Txn] = {}
        for index, (_, words) in enumerate(self.markers[:seen]):
            kind = words[0]
            if kind in ("tbatch", "marker?", "marker"):
                key = (words[1], current[words[1]].gen, int(words[2]))
                pid = int(words[3])
                txn = open_txns.get((*key, pid))
                if kind == "marker":
                    assert txn is not None and txn.kind == words[5]
                    txn.appended = True
                    del open_txns[(*key, pid)]
                    continue
                if txn is None:
                    txn = open_txns[(*key, pid)] = Txn(pid, [])
                    txns[key].append(txn)
                if kind == "tbatch":
                    txn.batches.append((int(words[7]), int(words[8])))
                else:
                    txn.kind, txn.epoch = words[5], int(words[4])
                    txn.marker_offset = self.marker_offset_of.get(index)
                continue
            if kind == "topic+":
                current[words[1]] = self.incarnations[words[3]]
                names.add(words[1])
            elif kind in ("ack", "batch", "ret?", "ret"):
                key = (words[1], current[words[1]].gen, int(words[2]))
                if kind == "ack":
                    acked[key] = int(words[3])
                elif kind == "batch":
                    pid, epoch, seq, count, first, last = map(int, words[3:9])
                    batches[key].append((pid, epoch, seq, count, first, last))
                elif kind == "ret?":
                    pending_retention.add(key)
                else:
                    pending_retention.discard(key)
                    lso[key] = (int(words[3]), int(words[3]))
        for key in pending_retention:  # in progress at the crash: may have gone as far as it went
            after = next(
                int(w[3])
                for _, w in self.markers[seen:]
                if w[0] == "ret" and (w[1], current[w[1]].gen, int(w[2])) == key
            )
            lso[key] = (lso.get(key, (0, 0))[0], after)
        last_batches: dict[tuple[str, int, int], dict[int, tuple[int, int, int, int, int]]] = {}
        newest_batches: dict[tuple[str, int, int], dict[int, tuple[int, int, int, int, int]]] = {}
        for key, appended in batches.items():
            newest_batches[key] = {
                pid: (epoch, seq, count, first, last) for pid, epoch, seq, count, first, last in appended
            }
            durable = acked.get(key, 0)
            per_producer: dict[int, tuple[int, int, int, int, int]] = {}
            for pid, epoch, seq, count, first, last in appended:
                if last < durable:
                    per_producer[pid] = (epoch, seq, count, first, last)
            last_batches[key] = per_producer
        everything = list(self.incarnations.values())
        return Expected(
            markers_seen=seen,
            present=[i for i in everything if i.created_at < k and (i.delete_started_at or k) >= k],
            gone=[i for i in everything if i.deleted_at is not None and i.deleted_at < k],
            incarnations=self.incarnations,
            acked=acked,
            lso=lso,
            last_batches=last_batches,
            newest_batches=newest_batches,
            names=names,
            txns=txns,
            markers_written=self.markers_written,
            keyed=self.keyed,
        )


def check_state(data_dir: Path, expected: Expected) -> tuple[str, str]:
    try:
        manager = LogManager.open(data_dir, TopicConfig())
    except CorruptLogError as error:
        return "refused", str(error)
    except Exception as error:
        return "open_error", f"{type(error).__name__}: {error}"
    try:
        return check_open(manager, expected)
    finally:
        try:
            manager.close()
        except Exception:
            pass


def check_open(manager: LogManager, expected: Expected) -> tuple[str, str]:
    recovered: dict[str, Incarnation] = {}
    for name, meta in manager.topics.items():
        incarnation = expected.incarnations.get(str(meta.topic_id))
        if incarnation is None or incarnation.name != name:
            return "corrupt_read", f"topic {name} has an id {meta.topic_id} never created"
        recovered[name] = incarnation
    for incarnation in expected.present:
        if recovered.get(incarnation.name) is not incarnation:
            return "acked_loss", f"acknowledged topic {incarnation.name}#{incarnation.gen} is missing"
    for incarnation in expected.gone:
        if recovered.get(incarnation.name) is incarnation:
            return "resurrected", f"deleted topic {incarnation.name}#{incarnation.gen} came back"
    for incarnation in recovered.values():
        compact = manager.topic_config(incarnation.name).compact
        for partition in range(incarnation.partitions):
            check = check_compact_partition if compact else check_partition
            outcome = check(manager, incarnation, partition, expected)
            if outcome[0] != "ok":
                return outcome
    for name in sorted(expected.names - set(recovered)):
        # A deleted (or never durably created) topic made again must start empty.
        meta = manager.create_topic(name, 1, TOPIC_OVERRIDES)
        log = manager.partitions[TopicPartition(name, 0)]
        if log.log_end_offset != 0:
            return "resurrected", f"topic {name} made again after the crash starts at offset {log.log_end_offset}"
        del meta
    return "ok", ""


def check_partition(
    manager: LogManager, incarnation: Incarnation, partition: int, expected: Expected
) -> tuple[str, str]:
    key = (incarnation.name, incarnation.gen, partition)
    where = f"{incarnation.name}#{incarnation.gen}-{partition}"
    unified = manager.partitions[TopicPartition(incarnation.name, partition)]
    log = unified.log
    durable = expected.acked.get(key, 0)
    acked_start, highest_start = expected.lso.get(key, (0, 0))
    start, end = log.log_start_offset, log.log_end_offset
    if end < durable:
        return "acked_loss", f"{where}: log end {end} below the acknowledged {durable}"
    if start > max(highest_start, 0):
        return "acked_loss", f"{where}: log start {start} past any retention reached ({highest_start})"
    if start < acked_start:
        return "resurrected", f"{where}: log start {start} below the acknowledged {acked_start}"
    offset = start
    expect_next: int | None = None
    gap = ""
    controls: dict[int, tuple[int, int, str]] = {}  # the markers in the log
    transactional: list[tuple[int, int, int]] = []  # (first, last, producer id) of data batches
    while offset < end:
        piece = log.read(offset, 1 << 16, end)
        if piece is None:
            if offset < durable:
                return "acked_loss", f"{where}: nothing served at {offset} < {end}"
            gap = f"{where}: log end {end}, but nothing is served from {offset} (never acknowledged)"
            break
        data = piece.read()
        for header, raw in iter_batches(data):
            try:
                _, records = decode_batch(raw)
            except RecordDecodeError as error:
                return "corrupt_read", f"{where}: batch at {header.base_offset}: {error}"
            if header.is_control:
                try:
                    marker, _ = parse_control_record(records[0][2], records[0][3])
                except (RecordDecodeError, IndexError) as error:
                    return "corrupt_read", f"{where}: control batch at {header.base_offset}: {error}"
                found = (header.producer_id, header.producer_epoch, marker.name)
                written = expected.markers_written.get(key, {}).get(header.base_offset)
                if found != written:
                    return "corrupt_read", f"{where}: marker {found} at {header.base_offset}, written {written}"
                controls[header.base_offset] = found
                expect_next = header.base_offset + 1
                continue
            if header.is_transactional:
                transactional.append((header.base_offset, header.last_offset, header.producer_id))
            if expect_next is not None and header.base_offset != expect_next:
                if header.base_offset < expect_next or expect_next < durable:
                    return "corrupt_read", f"{where}: batch at {header.base_offset} after one ending at {expect_next}"
                gap = f"{where}: offsets {expect_next}-{header.base_offset - 1} (never acknowledged) are a hole"
            for record_offset, _, _, value, _ in records:
                if value != value_of(incarnation.name, incarnation.gen, record_offset):
                    what = "acked_loss" if record_offset < durable else "corrupt_read"
                    return what, f"{where}: offset {record_offset} holds {value!r}"
            expect_next = header.base_offset + header.last_offset_delta + 1
        offset = piece.last_offset + 1
    for pid, (epoch, seq, count, first, last) in expected.newest_batches.get(key, {}).items():
        # The newest batch of each producer, acknowledged or not: a retry is either appended anew
        # or answered as a duplicate, and then its original offsets must hold its records.
        if first < start:
            continue
        try:
            retry = unified.append(
                batch_for(incarnation.name, incarnation.gen, log.log_end_offset, count, (pid, epoch, seq))
            )
        except ProducerStateError as error:
            return "retry_refused", f"{where}: retry of the newest batch of producer {pid} (seq {seq}): {error}"
        if retry.duplicate:
            if (retry.first_offset, retry.last_offset) != (first, last):
                return "acked_loss", f"{where}: retry of producer {pid} seq {seq} answered offsets {retry}"
            held = read_values(log, first, last)
            wanted = [value_of(incarnation.name, incarnation.gen, o) for o in range(first, last + 1)]
            if held != wanted:
                return "phantom_duplicate", (
                    f"{where}: retry of producer {pid} seq {seq} answered as a duplicate at {first}-{last}, "
                    f"which the log does not hold (log end {end}): an acknowledgement of lost records"
                )
    for pid, (epoch, seq, count, first, last) in expected.last_batches.get(key, {}).items():
        if first < start:
            continue
        try:
            retry = unified.append(batch_for(incarnation.name, incarnation.gen, first, count, (pid, epoch, seq)))
        except ProducerStateError as error:
            return "retry_refused", f"{where}: retry of acknowledged batch of producer {pid} (seq {seq}): {error}"
        if not retry.duplicate or (retry.first_offset, retry.last_offset) != (first, last):
            return "acked_loss", f"{where}: retry of producer {pid} seq {seq} (offsets {first}-{last}) answered {retry}"
    if expected.txns.get(key):
        outcome = check_transactions(unified, expected.txns[key], controls, transactional, durable, where)
        if outcome[0] != "ok":
            return outcome
    try:
        unified.append(batch_for(incarnation.name, incarnation.gen, log.log_end_offset, 1))
        log.flush()
    except Exception as error:
        return "broken_after", f"{where}: append after recovery: {error}"
    return ("gap", gap) if gap else ("ok", "")


@dataclasses.dataclass
class LogTxn:
    """A transaction as the recovered log holds it: data batches of a producer from its first
    transactional batch to its marker (Kafka's semantics of the log)."""

    pid: int
    batches: list[tuple[int, int]]
    marker_offset: int | None = None
    kind: str | None = None

    @property
    def first(self) -> int:
        return self.batches[0][0]


def transactions_in_log(
    controls: dict[int, tuple[int, int, str]], transactional: list[tuple[int, int, int]]
) -> list[LogTxn]:
    events = sorted(
        [(first, last, pid, None) for first, last, pid in transactional]
        + [(offset, offset, pid, kind) for offset, (pid, _, kind) in controls.items()]
    )
    found: list[LogTxn] = []
    current: dict[int, LogTxn] = {}
    for first, last, pid, kind in events:
        if kind is None:
            if pid not in current:
                current[pid] = LogTxn(pid, [])
                found.append(current[pid])
            current[pid].batches.append((first, last))
        elif pid in current:  # a marker with no data here before it ends nothing (an empty one)
            txn = current.pop(pid)
            txn.marker_offset, txn.kind = first, kind
    return found


def check_transactions(
    unified: UnifiedLog,
    txns: list[Txn],
    controls: dict[int, tuple[int, int, str]],
    transactional: list[tuple[int, int, int]],
    durable: int,
    where: str,
) -> tuple[str, str]:
    """read_committed after recovery: the LSO (core Partition) and the aborted transactions
    (`.txnindex` through UnifiedLog.aborted_ranges) against the markers in the log."""
    start, end = unified.log_start_offset, unified.log_end_offset
    for txn in txns:
        if txn.appended and txn.marker_offset is not None and txn.marker_offset < durable:
            if txn.marker_offset not in controls:
                return "acked_loss", f"{where}: acknowledged {txn.kind} marker of {txn.pid} at {txn.marker_offset} lost"
        for first, last in txn.batches:
            if last < durable and not any(f == first and pid == txn.pid for f, _, pid in transactional):
                return "acked_loss", f"{where}: acknowledged batch {first}..{last} of {txn.pid} is not in the log"
    in_log = transactions_in_log(controls, transactional)
    oldest_open = min(((t.first, t.pid) for t in in_log if t.kind is None), default=None)
    partition = Partition(unified.topic_partition, uuid.uuid4(), unified, durable_acks=True)
    before = partition.last_stable_offset  # the high watermark is the recovery point
    if oldest_open is not None and before > oldest_open[0]:
        return "lso_past_open", (
            f"{where}: LSO {before} (before a flush) past offset {oldest_open[0]}, where a transaction of "
            f"producer {oldest_open[1]} without its marker in the log begins"
        )
    unified.log.flush()
    lso, high_watermark = partition.last_stable_offset, partition.high_watermark
    wanted = min(high_watermark, oldest_open[0] if oldest_open else high_watermark)
    if lso > wanted:
        return "lso_past_open", f"{where}: LSO {lso} past offset {wanted}, where an open transaction begins"
    if lso < wanted:
        stuck = [t for t in in_log if t.first == lso]
        return "lso_stuck", f"{where}: LSO {lso} below {wanted} (high watermark {high_watermark}); {stuck}"
    ranges = unified.aborted_ranges(start, end)
    aborted = {(t.pid, t.first, t.marker_offset) for t in in_log if t.kind == "ABORT" and t.first >= start}
    for pid, first, last in ranges:
        if controls.get(last, (None, None, None))[::2] != (pid, "ABORT"):
            return "txnindex_phantom", (
                f"{where}: aborted-txn entry ({pid}, {first}..{last}) but the log holds {controls.get(last)} at {last}"
            )
    if len(set(ranges)) != len(ranges) or not set(ranges) <= aborted:
        return "txnindex_phantom", f"{where}: aborted-txn entries {ranges}, aborts in the log {sorted(aborted)}"
    if missing := aborted - set(ranges):
        return "abort_exposed", f"{where}: aborted transactions {sorted(missing)} not in {ranges}"
    for t in in_log:
        if t.kind != "ABORT":
            continue
        for first, last in t.batches:  # a read_committed fetch of each aborted batch is told
            told = unified.aborted_ranges(first, last + 1)
            if not any(pid == t.pid and f <= first and lo == t.marker_offset for pid, f, lo in told):
                return "abort_exposed", f"{where}: a fetch of {first}..{last} (aborted by {t.pid}) is told {told}"
    # After a restart the coordinator ends what is open here: a marker whose append was under
    # way (or not answered) is retried; a transaction with no marker is aborted at its
    # timeout, fencing the producer's epoch.
    ended = []
    try:
        for t in in_log:
            if t.kind is not None:
                continue
            recorded = next((r for r in reversed(txns) if r.pid == t.pid), None)
            if recorded is not None and recorded.kind is not None and recorded.marker_offset not in controls:
                aborted_now, epoch = recorded.kind == "ABORT", recorded.epoch
            else:
                aborted_now, epoch = True, unified.producer_state.producers[t.pid].epoch + 1
            marker = unified.append_marker(t.pid, epoch, TXN_COORDINATOR_EPOCH, aborted_now)
            if aborted_now:
                ended.append((t.pid, t.first, marker.first_offset))
        unified.log.flush()
    except Exception as error:
        return "broken_after", f"{where}: ending the open transactions after recovery: {type(error).__name__}: {error}"
    if partition.last_stable_offset != partition.high_watermark:
        return "broken_after", (
            f"{where}: every transaction ended, but the LSO {partition.last_stable_offset} stays below "
            f"the high watermark {partition.high_watermark}"
        )
    now = set(unified.aborted_ranges(start, unified.log_end_offset))
    if not set(ended) <= now:
        return "abort_exposed", f"{where}: aborts after recovery {ended} not all in {sorted(now)}"
    return "ok", ""


def read_values(log: PartitionLog, first: int, last: int) -> list[bytes | None]:
    """The values the log serves at offsets first..last (what a consumer would get)."""
    values: dict[int, bytes | None] = {}
    offset = first
    while offset <= last:
        piece = log.read(offset, 1 << 16, log.log_end_offset)
        if piece is None:
            break
        for _, raw in iter_batches(piece.read()):
            for record_offset, _, _, value, _ in decode_batch(raw)[1]:
                values[record_offset] = value
        offset = piece.last_offset + 1
    return [values.get(o) for o in range(first, last + 1)]


# ---- compacted topics -----------------------------------------------------------------------

CLEANER_LEFTOVER_SUFFIXES = (".cleaned", ".swap", ".swap.tmp")


@dataclasses.dataclass
class CompactView:
    """A recovered compacted partition as read back, with what was written to it."""

    where: str
    unified: UnifiedLog
    durable: int
    written: dict[int, Written]
    served: dict[int, Written]  # data records the log serves, by offset
    batches: dict[int, tuple[int, int]]  # base offset -> (last offset, producer id), emptied ones too
    controls: dict[int, tuple[int, int, str]]  # markers served (emptied control batches: not here)
    txn_of: dict[int, Txn]  # offset -> its transaction, for the transactions the markers name
    ended: dict[int, str] = dataclasses.field(default_factory=dict)  # pid -> kind, ended by the checker
    # The markers the checker appended to end them (the offset of a marker lost in the crash may
    # be taken by one of these: it must not count as that marker).
    ending_markers: dict[int, tuple[int, int, str]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(
        cls, where: str, unified: UnifiedLog, durable: int, written: dict[int, Written], txns: list[Txn]
    ) -> CompactView:
        txn_of = {o: txn for txn in txns for first, last in txn.batches for o in range(first, last + 1)}
        return cls(where, unified, durable, written, {}, {}, {}, txn_of)

    def fate(self, offset: int) -> str:
        """ "plain", or the transaction's "COMMIT" / "ABORT" / "open" in the recovered log: its
        marker was acknowledged, or is in the log; else it is open (the cleaner never reached it)."""
        record = self.written[offset]
        if not record.transactional:
            return "plain"
        txn = self.txn_of.get(offset)  # None: appended just before the crash point (marker later)
        if txn is not None and txn.kind is not None and txn.marker_offset is not None:
            marker = (txn.pid, txn.epoch, txn.kind)
            if (txn.appended and txn.marker_offset < self.durable) or self.controls.get(txn.marker_offset) == marker:
                return txn.kind
        return self.ended.get(record.producer_id, "open")

    def committed(self, offset: int) -> bool:
        return self.fate(offset) in ("plain", "COMMIT")


def check_compact_partition(
    manager: LogManager, incarnation: Incarnation, partition: int, expected: Expected
) -> tuple[str, str]:
    key = (incarnation.name, incarnation.gen, partition)
    topic_partition = TopicPartition(incarnation.name, partition)
    txns = expected.txns.get(key, [])
    view = CompactView.of(
        f"{incarnation.name}#{incarnation.gen}-{partition}",
        manager.partitions[topic_partition],
        expected.acked.get(key, 0),
        expected.keyed.get(key, {}),
        txns,
    )
    return check_compact_view(
        view,
        manager.data_dir / topic_partition.directory_name(),
        incarnation,
        expected.markers_written.get(key, {}),
        expected.last_batches.get(key, {}),
        txns,
    )


def check_compact_view(
    view: CompactView,
    directory: Path,
    incarnation: Incarnation,
    markers: dict[int, tuple[int, int, str]],
    last_batches: dict[int, tuple[int, int, int, int, int]],
    txns: list[Txn],
    probe_append: bool = True,
) -> tuple[str, str]:
    """Every check of a recovered compacted partition (see the module comment), in order; ends
    the transactions left open (their markers in `view.ending_markers`) and, with
    `probe_append`, appends and flushes one more record."""
    where, unified = view.where, view.unified
    log = unified.log
    leftovers = sorted(p.name for p in directory.iterdir() if p.name.endswith(CLEANER_LEFTOVER_SUFFIXES))
    if leftovers:
        return "leftover", f"{where}: files of a cleaning pass are left after the open: {leftovers}"
    start, end = log.log_start_offset, log.log_end_offset
    if end < view.durable:
        return "acked_loss", f"{where}: log end {end} below the acknowledged {view.durable}"
    if start != 0:
        return "acked_loss", f"{where}: log start {start}, but nothing deletes records from this log"
    outcome = check_segment_files(directory, where)
    if outcome[0] != "ok":
        return outcome
    outcome = read_compacted(view, incarnation, markers)
    if outcome[0] != "ok":
        return outcome
    outcome = check_superseded(view)
    if outcome[0] != "ok":
        return outcome
    partition_view = Partition(unified.topic_partition, uuid.uuid4(), unified, durable_acks=True)
    open_data = [o for o in view.served if view.fate(o) == "open"]
    oldest_open = min(open_data, default=None)
    before = partition_view.last_stable_offset
    if oldest_open is not None and before > oldest_open:
        return "lso_past_open", f"{where}: LSO {before} (before a flush) past open transactional data at {oldest_open}"
    log.flush()
    lso, high_watermark = partition_view.last_stable_offset, partition_view.high_watermark
    wanted = high_watermark if oldest_open is None else min(high_watermark, oldest_open)
    if lso > wanted:
        return "lso_past_open", f"{where}: LSO {lso} past {wanted}, where open transactional data begins"
    if lso < wanted:
        return "lso_stuck", f"{where}: LSO {lso} below {wanted} (high watermark {high_watermark})"
    outcome = check_read_committed(view, lso, "")
    if outcome[0] != "ok":
        return outcome
    outcome = check_producer_retries(view, incarnation, last_batches)
    if outcome[0] != "ok":
        return outcome
    # The coordinator ends what is open after a restart (see check_transactions), then the whole
    # log is read_committed.
    try:
        for pid in sorted({view.written[o].producer_id for o in open_data}):
            recorded = next((t for t in reversed(txns) if t.pid == pid), None)
            if recorded is not None and recorded.kind is not None and recorded.marker_offset not in view.controls:
                aborted_now, epoch = recorded.kind == "ABORT", recorded.epoch
            else:
                aborted_now, epoch = True, unified.producer_state.producers[pid].epoch + 1
            marker = unified.append_marker(pid, epoch, TXN_COORDINATOR_EPOCH, aborted_now)
            view.ended[pid] = "ABORT" if aborted_now else "COMMIT"
            view.ending_markers[marker.first_offset] = (pid, epoch, view.ended[pid])
        log.flush()
    except Exception as error:
        return "broken_after", f"{where}: ending the open transactions after recovery: {type(error).__name__}: {error}"
    if partition_view.last_stable_offset != partition_view.high_watermark:
        return "broken_after", (
            f"{where}: every transaction ended, but the LSO {partition_view.last_stable_offset} stays below "
            f"the high watermark {partition_view.high_watermark}"
        )
    outcome = check_read_committed(view, partition_view.last_stable_offset, " (open transactions ended)")
    if outcome[0] != "ok" or not probe_append:
        return outcome
    try:
        unified.append(keyed_batch(incarnation.name, incarnation.gen, log.log_end_offset, [("key0", False)]))
        log.flush()
    except Exception as error:
        return "broken_after", f"{where}: append after recovery: {error}"
    return "ok", ""


def check_segment_files(directory: Path, where: str) -> tuple[str, str]:
    """The segment files as stored (not as reads see them): each one's batches lie between its
    base offset and the next one's, in order. A swap that left old segments beside the cleaned
    one that replaced them (a mix) fails here even where reads skip the duplicates."""
    segments = sorted((int(p.name.removesuffix(".log")), p) for p in directory.glob("*.log"))
    for at, (base, path) in enumerate(segments):
        next_base = segments[at + 1][0] if at + 1 < len(segments) else None
        previous = base - 1
        for _, _, first, last in segment_batches(path):
            if first <= previous or last < first or (next_base is not None and last >= next_base):
                return "segments_mixed", (
                    f"{where}: segment {base} holds a batch {first}..{last} after offset {previous}"
                    f"{'' if next_base is None else f', the next segment starting at {next_base}'}"
                )
            previous = last
    return "ok", ""


def read_compacted(
    view: CompactView, incarnation: Incarnation, markers: dict[int, tuple[int, int, str]]
) -> tuple[str, str]:
    """Reads the whole log: batch and record offsets strictly increase, every record is the one
    written at its offset, every marker the one written at its offset."""
    log, where = view.unified.log, view.where
    end = log.log_end_offset
    next_offset = offset = log.log_start_offset
    while offset < end:
        piece = log.read(offset, 1 << 16, end)
        if piece is None:
            break  # what is missing is judged record by record
        for header, raw in iter_batches(piece.read()):
            if header.base_offset < next_offset or header.last_offset < header.base_offset:
                return "corrupt_read", (
                    f"{where}: batch {header.base_offset}..{header.last_offset} after one ending at {next_offset - 1}"
                )
            next_offset = header.last_offset + 1
            try:
                _, records = decode_batch(raw)
            except RecordDecodeError as error:
                return "corrupt_read", f"{where}: batch at {header.base_offset}: {error}"
            view.batches[header.base_offset] = (header.last_offset, header.producer_id)
            if header.is_control:
                if not records:
                    continue  # emptied by the cleaner, kept for its producer's sake
                try:
                    marker, _ = parse_control_record(records[0][2], records[0][3])
                except (RecordDecodeError, IndexError) as error:
                    return "corrupt_read", f"{where}: control batch at {header.base_offset}: {error}"
                found = (header.producer_id, header.producer_epoch, marker.name)
                if found != markers.get(header.base_offset):
                    marker_written = markers.get(header.base_offset)
                    return "corrupt_read", f"{where}: marker {found} at {header.base_offset}, written {marker_written}"
                view.controls[header.base_offset] = found
                continue
            previous = header.base_offset - 1
            for record_offset, _, record_key, value, _ in records:
                if not previous < record_offset <= header.last_offset:
                    return "corrupt_read", (
                        f"{where}: record offset {record_offset} in batch {header.base_offset}..{header.last_offset} "
                        f"after {previous}"
                    )
                previous = record_offset
                written = view.written.get(record_offset)
                if written is None:
                    return "corrupt_read", f"{where}: a record at {record_offset}, where none was written"
                wanted = None if written.tombstone else value_of(incarnation.name, incarnation.gen, record_offset)
                held = Written(
                    (record_key or b"").decode(errors="replace"),
                    value is None,
                    header.producer_id,
                    header.is_transactional,
                )
                if held != written or value != wanted:
                    what = "acked_loss" if record_offset < view.durable else "corrupt_read"
                    return what, f"{where}: offset {record_offset} holds {held} {value!r}, written {written}"
                view.served[record_offset] = written
        offset = piece.last_offset + 1
    return "ok", ""


def check_superseded(view: CompactView) -> tuple[str, str]:
    """Every acknowledged record the log no longer serves is a tombstone, aborted, or followed by
    a committed record of its key that the log serves or that was acknowledged."""
    newest: dict[str, int] = {}  # key -> its last committed record served or acknowledged
    for offset, record in view.written.items():
        if (offset < view.durable or offset in view.served) and view.committed(offset):
            newest[record.key] = max(newest.get(record.key, -1), offset)
    for offset, record in sorted(view.written.items()):
        if offset >= view.durable or offset in view.served or record.tombstone:
            continue
        fate = view.fate(offset)
        if fate == "ABORT":
            continue
        if fate == "open":
            return "acked_loss", f"{view.where}: acknowledged record {offset} of an open transaction is gone"
        if newest.get(record.key, -1) <= offset:
            return "acked_loss", (
                f"{view.where}: acknowledged record {offset} ({record}) is gone, and no later committed record "
                "of its key supersedes it"
            )
    return "ok", ""


def check_read_committed(view: CompactView, lso: int, stage: str) -> tuple[str, str]:
    """What a read_committed consumer gets below the LSO (aborted transactions skipped as the
    `.txnindex` tells a fetch): never an aborted or open record, every committed one served, and
    per key the latest committed record written (or nothing, if that is a tombstone)."""
    where = view.where + stage
    unified = view.unified
    ranges = unified.aborted_ranges(unified.log_start_offset, unified.log_end_offset)
    markers = {**view.controls, **view.ending_markers}
    for pid, first, last in ranges:
        if markers.get(last, (None, None, None))[::2] != (pid, "ABORT"):
            return "txnindex_phantom", (
                f"{where}: aborted-txn entry ({pid}, {first}..{last}), but the log holds {markers.get(last)} at {last}"
            )
    seen: dict[str, int] = {}
    for offset in sorted(view.served):
        if offset >= lso:
            break
        record = view.served[offset]
        hidden = record.transactional and any(
            pid == record.producer_id and first <= offset <= last for pid, first, last in ranges
        )
        fate = view.fate(offset)
        if fate == "open":
            return "lso_past_open", f"{where}: open transactional record {offset} below the LSO {lso}"
        if hidden and fate != "ABORT":
            what = "acked_loss" if offset < view.durable else "corrupt_read"
            return what, f"{where}: committed record {offset} ({record}) is skipped as aborted ({ranges})"
        if not hidden and fate == "ABORT":
            return "abort_exposed", f"{where}: aborted record {offset} ({record}) is served to read_committed"
        if not hidden:
            seen[record.key] = offset
    latest: dict[str, int] = {}
    for offset in sorted(view.written):
        if offset >= lso:
            break
        if (offset < view.durable or offset in view.served) and view.committed(offset):
            latest[view.written[offset].key] = offset
    for key in sorted(set(seen) | set(latest)):
        wanted, got = latest.get(key), seen.get(key)
        if got == wanted:
            continue
        if wanted is not None and view.written[wanted].tombstone:
            if got is None:
                continue  # the tombstone went after its delete horizon
            return "resurrected", (
                f"{where}: key {key} reads as offset {got}, though it was deleted by the tombstone at {wanted}"
            )
        return "acked_loss", (
            f"{where}: key {key}: its latest committed record, at {wanted}, is gone (read_committed gets {got})"
        )
    return "ok", ""


def check_producer_retries(
    view: CompactView, incarnation: Incarnation, last_batches: dict[int, tuple[int, int, int, int, int]]
) -> tuple[str, str]:
    """The last acknowledged batch of each idempotent producer stays in the log (maybe emptied:
    Kafka's cleaner keeps the last batch of every active producer) and a retry of it is
    answered as a duplicate at its offsets."""
    for pid, (epoch, seq, _, first, last) in last_batches.items():
        if any(base > first and producer == pid for base, (_, producer) in view.batches.items()):
            continue  # a newer batch of the producer survived the crash
        if view.batches.get(first) != (last, pid):
            return "acked_loss", (
                f"{view.where}: the last acknowledged batch {first}..{last} of producer {pid} is not in the log"
            )
        keys = [(view.written[o].key, view.written[o].tombstone) for o in range(first, last + 1)]
        batch = keyed_batch(incarnation.name, incarnation.gen, first, keys, (pid, epoch, seq))
        try:
            retry = view.unified.append(batch)
        except ProducerStateError as error:
            return "retry_refused", f"{view.where}: retry of acknowledged batch of producer {pid} (seq {seq}): {error}"
        if not retry.duplicate or (retry.first_offset, retry.last_offset) != (first, last):
            return "acked_loss", (
                f"{view.where}: retry of producer {pid} seq {seq} (offsets {first}-{last}) answered {retry}"
            )
    return "ok", ""
