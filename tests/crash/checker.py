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
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import defaultdict
from pathlib import Path

from tests.crash.workload import TOPIC_OVERRIDES, batch_for, value_of
from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import RecordDecodeError, decode_batch, iter_batches
from tidelog.storage import CorruptLogError, PartitionLog
from tidelog.storage.log_manager import LogManager
from tidelog.storage.producer_state import ProducerStateError
from tidelog.storage.unified_log import TopicPartition


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


class Expectations:
    """Reads the markers of an op log once; `at(k)` is what was acknowledged before op k."""

    def __init__(self, ops: list[list[str]]) -> None:
        self.markers: list[tuple[int, list[str]]] = [(i, op[1].split()) for i, op in enumerate(ops) if op[0] == "M"]
        self.positions = [i for i, _ in self.markers]
        self.incarnations: dict[str, Incarnation] = {}
        gens: dict[str, Incarnation] = {}
        for at, words in self.markers:
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
        for _, words in self.markers[:seen]:
            kind = words[0]
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
        for partition in range(incarnation.partitions):
            outcome = check_partition(manager, incarnation, partition, expected)
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
    try:
        unified.append(batch_for(incarnation.name, incarnation.gen, log.log_end_offset, 1))
        log.flush()
    except Exception as error:
        return "broken_after", f"{where}: append after recovery: {error}"
    return ("gap", gap) if gap else ("ok", "")


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
