"""The checker: anomalies of a queue or transaction history (pure Python, no I/O).

Each value is sent once, so every record read names the one operation that wrote it. From the
history (`tidelog.verify.history`) and its final reads the checker reports:

- `lost-write`: an acknowledged send (or committed transaction's send) missing from a final
  read that reached the end of its partition, or, if that read could not finish, below the
  highest offset read there;
- `unseen`: an acknowledged value never read, above everything read of its partition (the final
  read did not reach it);
- `duplicate`: one value at two offsets (idempotence should have kept one; allowed by the
  at-least-once queue workload);
- `inconsistent-offsets`: one offset, two values (two reads, or an acknowledgement and a read,
  disagree);
- `aborted-read` (G1a): a value of an aborted transaction read by a read_committed consumer;
- `uncommitted-read`: a read_committed consumer received a value before its transaction was
  asked to commit;
- `poll-skip`: a consumer's consecutive records of one partition jump over records it should
  have received (records visible at its isolation level, per the final read);
- `nonmonotonic-poll`: a consumer's next record of a partition is at or below the previous one;
  both only between two position resets (assignment, revocation, a rewind after an abort);
- `G0`: a write cycle between committed transactions (T1 wrote before T2 on one partition and
  after it on another). Kafka promises no write isolation, so it is reported and allowed.

Indeterminate (`info`) operations' values may or may not appear, but at most once (a second
copy is a duplicate like any other).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidelog.verify.history import FAIL, FINAL, INFO, OK, POLL, READ_COMMITTED, RESET, SEND, TXN, Mop, Op

LOST_WRITE = "lost-write"
UNSEEN = "unseen"
DUPLICATE = "duplicate"
INCONSISTENT_OFFSETS = "inconsistent-offsets"
ABORTED_READ = "aborted-read"
UNCOMMITTED_READ = "uncommitted-read"
POLL_SKIP = "poll-skip"
NONMONOTONIC_POLL = "nonmonotonic-poll"
G0 = "G0"

ANOMALIES = (
    LOST_WRITE,
    UNSEEN,
    DUPLICATE,
    INCONSISTENT_OFFSETS,
    ABORTED_READ,
    UNCOMMITTED_READ,
    POLL_SKIP,
    NONMONOTONIC_POLL,
    G0,
)

# What each workload's guarantees allow: at-least-once may duplicate; Kafka transactions give
# no write isolation (Jepsen's Kafka checker allows G0 too).
ALLOWED: dict[str, frozenset[str]] = {
    "queue": frozenset({DUPLICATE, G0}),
    "idempotent": frozenset({G0}),
    "txn": frozenset({G0}),
}

# Offsets listed in one poll-skip example.
SKIPPED_OFFSETS_SHOWN_MAX = 8


@dataclass
class Result:
    workload: str
    anomalies: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {name: [] for name in ANOMALIES})
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def allowed(self) -> frozenset[str]:
        return ALLOWED.get(self.workload, frozenset({G0}))

    @property
    def counts(self) -> dict[str, int]:
        return {name: len(found) for name, found in self.anomalies.items()}

    @property
    def forbidden(self) -> dict[str, int]:
        return {name: count for name, count in self.counts.items() if count and name not in self.allowed}

    @property
    def valid(self) -> bool:
        return not self.forbidden

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "valid": self.valid,
            "counts": self.counts,
            "allowed": sorted(self.allowed),
            "stats": self.stats,
            "anomalies": self.anomalies,
        }


@dataclass(slots=True)
class _Write:
    op: Op
    mop: Mop

    @property
    def status(self) -> str:
        return self.op.type


def check(history: Sequence[Op], workload: str = "txn") -> Result:
    """The anomalies of `history` (its operations numbered, final reads included)."""
    return _Checker(history, workload).run()


class _Checker:
    def __init__(self, history: Sequence[Op], workload: str) -> None:
        self.history = history
        self.result = Result(workload)
        self.ops = {op.index: op for op in history}
        self.writes: dict[str, _Write] = {}
        self.finals = [op for op in history if op.f == FINAL]
        self.polls = [op for op in history if op.f != FINAL and any(m.kind == POLL for m in op.mops)]
        # (key, offset) -> value -> indices of the operations that saw it there.
        self.at_offset: dict[tuple[str, int], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        # value -> (key, offset) -> indices of the operations that saw it there.
        self.positions: dict[str, dict[tuple[str, int], list[int]]] = defaultdict(lambda: defaultdict(list))
        self.read_by: dict[str, list[int]] = defaultdict(list)
        self.max_read: dict[str, int] = {}
        for op in history:
            for mop in op.mops:
                if mop.kind == SEND and mop.value is not None:
                    self.writes.setdefault(mop.value, _Write(op, mop))
                    if mop.offset is not None and op.f != FINAL:
                        self._saw(mop.key, mop.offset, mop.value, op.index)
                elif mop.kind == POLL and mop.value is not None and mop.offset is not None:
                    self._saw(mop.key, mop.offset, mop.value, op.index)
                    self.read_by[mop.value].append(op.index)
                    self.max_read[mop.key] = max(self.max_read.get(mop.key, -1), mop.offset)

    def _saw(self, key: str, offset: int, value: str, index: int) -> None:
        self.at_offset[(key, offset)][value].append(index)
        self.positions[value][(key, offset)].append(index)

    def _add(self, name: str, example: dict[str, Any]) -> None:
        self.result.anomalies[name].append(example)

    def run(self) -> Result:
        self._inconsistent_offsets()
        self._duplicates()
        self._lost_and_unseen()
        self._aborted_and_uncommitted_reads()
        self._poll_order()
        self._write_cycles()
        self._stats()
        return self.result

    def _inconsistent_offsets(self) -> None:
        for (key, offset), values in sorted(self.at_offset.items()):
            if len(values) > 1:
                self._add(
                    INCONSISTENT_OFFSETS,
                    {
                        "key": key,
                        "offset": offset,
                        "values": sorted(values),
                        "ops": sorted({i for seen in values.values() for i in seen}),
                    },
                )

    def _duplicates(self) -> None:
        for value, where in self.positions.items():
            if len(where) > 1:
                self._add(
                    DUPLICATE,
                    {
                        "value": value,
                        "positions": [[key, offset] for key, offset in sorted(where)],
                        "ops": sorted({i for seen in where.values() for i in seen}),
                    },
                )

    def _final_ends(self) -> dict[str, int]:
        """Per key, the offset the final reads reached it to (the lowest of them)."""
        ends: dict[str, int] = {}
        for op in self.finals:
            for key, end in (op.ends or {}).items():
                ends[key] = min(end, ends.get(key, end))
        return ends

    def _in_finals(self, value: str) -> bool:
        return any(self.ops[i].f == FINAL for i in self.read_by.get(value, ()))

    def _lost_and_unseen(self) -> None:
        ends = self._final_ends()
        have_finals = bool(self.finals)
        for value, write in self.writes.items():
            if write.op.f == FINAL:
                continue
            readers = self.read_by.get(value, [])
            # What must be there: acknowledged values, and values a read_committed consumer
            # received from a transaction that was not aborted (it became visible: committed).
            must = write.status == OK or (
                write.status == INFO
                and any(self.ops[i].f != FINAL and self.ops[i].isolation == READ_COMMITTED for i in readers)
            )
            if not must:
                continue
            key, offset = write.mop.key, write.mop.offset
            finished = key in ends
            if readers and (not have_finals or self._in_finals(value) or not finished):
                continue
            example = {"key": key, "offset": offset, "value": value, "ops": [write.op.index, *readers]}
            if readers:  # read once, gone from a final read that reached the end
                self._add(LOST_WRITE, {**example, "note": "read by a consumer, missing from the final read"})
            elif finished:
                self._add(LOST_WRITE, {**example, "final_end": ends[key]})
            elif offset is not None and offset <= self.max_read.get(key, -1):
                self._add(LOST_WRITE, {**example, "max_read": self.max_read[key]})
            else:
                self._add(UNSEEN, {**example, "max_read": self.max_read.get(key)})

    def _aborted_and_uncommitted_reads(self) -> None:
        for op in self.history:
            if op.isolation != READ_COMMITTED:
                continue
            for mop in op.mops:
                if mop.kind != POLL or mop.value is None:
                    continue
                write = self.writes.get(mop.value)
                if write is None or write.op.f != TXN:
                    continue
                example = {
                    "key": mop.key,
                    "offset": mop.offset,
                    "value": mop.value,
                    "ops": [write.op.index, op.index],
                }
                if write.status == FAIL:
                    self._add(ABORTED_READ, example)
                elif op.f != FINAL:
                    read_at = mop.at if mop.at is not None else op.complete
                    commit = write.op.commit_invoke
                    if commit is None or read_at < commit:
                        self._add(UNCOMMITTED_READ, {**example, "read_at": read_at, "commit_invoked": commit})

    def _visible(self) -> dict[tuple[str, str], list[int]]:
        """Per (isolation level, key): the offsets a consumer at that level should receive, in
        order: those of the final read at that level, and any a consumer did receive."""
        visible: dict[tuple[str, str], set[int]] = defaultdict(set)
        for op in self.history:
            for mop in op.mops:
                if mop.kind == POLL and mop.offset is not None:
                    visible[(op.isolation, mop.key)].add(mop.offset)
        return {where: sorted(offsets) for where, offsets in visible.items()}

    def _poll_order(self) -> None:
        visible = self._visible()
        by_process: dict[int, list[Op]] = defaultdict(list)
        for op in self.history:
            if op.f != FINAL:
                by_process[op.process].append(op)
        for ops in by_process.values():
            events: list[tuple[float, int, int, Op, Mop]] = []
            for op in ops:
                for position, mop in enumerate(op.mops):
                    if mop.kind in (POLL, RESET):
                        at = mop.at if mop.at is not None else op.invoke
                        events.append((at, op.index, position, op, mop))
            events.sort(key=lambda event: event[:3])
            last: dict[str, tuple[int, Op]] = {}
            for _, _, _, op, mop in events:
                if mop.kind == RESET:
                    last.pop(mop.key, None)
                    continue
                assert mop.offset is not None
                previous = last.get(mop.key)
                last[mop.key] = (mop.offset, op)
                if previous is None:
                    continue
                before, before_op = previous
                example = {
                    "key": mop.key,
                    "process": op.process,
                    "from_offset": before,
                    "to_offset": mop.offset,
                    "value": mop.value,
                    "within_one_poll": before_op is op,
                    "ops": sorted({before_op.index, op.index}),
                }
                if mop.offset <= before:
                    self._add(NONMONOTONIC_POLL, example)
                    continue
                offsets = visible[(op.isolation, mop.key)]
                low = bisect.bisect_right(offsets, before)
                high = bisect.bisect_left(offsets, mop.offset)
                if high > low:
                    skipped = offsets[low:high]
                    self._add(
                        POLL_SKIP,
                        {**example, "skipped": skipped[:SKIPPED_OFFSETS_SHOWN_MAX], "skipped_count": len(skipped)},
                    )

    def _write_cycles(self) -> None:
        """G0: cycles of write-write edges between committed transactions, edges taken from
        the order of their writes on each key."""
        offsets: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for write in self.writes.values():
            if write.op.f != TXN or write.status != OK:
                continue
            offset = write.mop.offset
            if offset is None:  # no acknowledgement: take it from a read
                seen = [o for (k, o) in self.positions.get(write.mop.value or "", {}) if k == write.mop.key]
                offset = min(seen) if seen else None
            if offset is not None:
                offsets[write.mop.key].append((offset, write.op.index))
        edges: dict[int, set[int]] = defaultdict(set)
        witness: dict[tuple[int, int], str] = {}
        for key, writes in offsets.items():
            writes.sort()
            for (_, a), (_, b) in zip(writes, writes[1:], strict=False):
                if a != b:
                    edges[a].add(b)
                    witness.setdefault((a, b), key)
        for component in _strongly_connected(edges):
            if len(component) > 1:
                members = set(component)
                shown = [
                    [a, b, witness[(a, b)]]
                    for a in sorted(component)
                    for b in sorted(edges.get(a, ()))
                    if b in members and (a, b) in witness
                ]
                self._add(G0, {"ops": sorted(component), "edges": shown})

    def _stats(self) -> None:
        stats: dict[str, int] = defaultdict(int)
        for op in self.history:
            if op.f == FINAL:
                stats[f"final-{op.isolation}-records"] += sum(1 for m in op.mops if m.kind == POLL)
                continue
            stats[f"{op.f}-{op.type}"] += 1
            for mop in op.mops:
                if mop.kind == SEND:
                    stats["sends"] += 1
                    stats[f"sends-{op.type}"] += 1
                elif mop.kind == POLL:
                    stats["records-polled"] += 1
        self.result.stats = dict(sorted(stats.items()))


def _strongly_connected(edges: dict[int, set[int]]) -> Iterable[list[int]]:
    """Tarjan's strongly connected components, iterative (histories have many operations)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    counter = 0
    nodes = set(edges) | {b for targets in edges.values() for b in targets}
    for root in sorted(nodes):
        if root in index:
            continue
        work: list[tuple[int, Iterator[int]]] = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            advanced = False
            for target in targets:
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(edges.get(target, ())))))
                    advanced = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                yield component
