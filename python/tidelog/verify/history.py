"""A run's history: every operation a worker invoked, with its outcome.

An operation (`Op`) is one client call or one transaction: its process (a worker's client; a
worker that had to rebuild its client takes a new process number), what it was (`f`), when it
was invoked and when it completed (seconds since the run began), and how it ended: `ok`
(acknowledged or committed), `fail` (certainly did not happen: an aborted transaction) or `info`
(indeterminate: it may or may not have happened).

Its micro-operations (`Mop`) say what it did, one per value:

- `send`: a value written to a key (a topic-partition); the offset when the write was
  acknowledged, else None;
- `poll`: a record a consumer received (key, offset, value), with the time it arrived;
- `reset`: the consumer's position on a key was set anew (partitions assigned, revoked, or
  rewound to the committed offsets after an abort), so the next poll of it may jump.

Final reads are operations too (`f == "final"`): one per isolation level, holding every record
of every partition, and in `ends` the offset each key was read up to (a key missing there was
not read to its end).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OK = "ok"
FAIL = "fail"
INFO = "info"

SEND = "send"
POLL = "poll"
RESET = "reset"

# Operation kinds (`Op.f`).
TXN = "txn"
ASSIGN = "assign"
FINAL = "final"

READ_COMMITTED = "read_committed"
READ_UNCOMMITTED = "read_uncommitted"


@dataclass(slots=True)
class Mop:
    kind: str
    key: str
    offset: int | None = None
    value: str | None = None
    at: float | None = None  # when a polled record arrived

    def to_json(self) -> list[Any]:
        return [self.kind, self.key, self.offset, self.value, self.at]

    @staticmethod
    def from_json(data: list[Any]) -> Mop:
        return Mop(*data)


@dataclass(slots=True)
class Op:
    process: int
    f: str
    type: str
    invoke: float
    complete: float
    mops: list[Mop] = field(default_factory=list)
    index: int = -1
    isolation: str = READ_COMMITTED
    # Transactions: when commit_transaction was first called (None: it never was).
    commit_invoke: float | None = None
    # Final reads: the offset each key was read up to.
    ends: dict[str, int] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mops"] = [mop.to_json() for mop in self.mops]
        return {name: value for name, value in data.items() if value is not None}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Op:
        data = dict(data)
        data["mops"] = [Mop.from_json(mop) for mop in data.get("mops", [])]
        return Op(**data)

    def describe(self) -> str:
        """One line for reports: `#12 p3 txn ok 1.20-1.35s: send a/1 ..., poll b/0@17 ...`."""
        parts = []
        for mop in self.mops[:DESCRIBE_MOPS_MAX]:
            if mop.kind == RESET:
                parts.append(f"reset {mop.key}")
            else:
                where = f"{mop.key}@{mop.offset}" if mop.offset is not None else mop.key
                parts.append(f"{mop.kind} {where}={mop.value}")
        if len(self.mops) > DESCRIBE_MOPS_MAX:
            parts.append(f"... {len(self.mops) - DESCRIBE_MOPS_MAX} more")
        error = f" ({self.error})" if self.error else ""
        return (
            f"#{self.index} p{self.process} {self.f} {self.type}{error} "
            f"{self.invoke:.3f}-{self.complete:.3f}s: " + ", ".join(parts)
        )


# Micro-operations shown per operation in reports.
DESCRIBE_MOPS_MAX = 6


def write_jsonl(path: Path, ops: Iterable[Op]) -> None:
    with path.open("w") as out:
        for op in ops:
            out.write(json.dumps(op.to_json()) + "\n")


def read_jsonl(path: Path) -> Iterator[Op]:
    with path.open() as lines:
        for line in lines:
            if line.strip():
                yield Op.from_json(json.loads(line))


def number(ops: Iterable[Op]) -> list[Op]:
    """The operations in invocation order, each given its index in that order."""
    ordered = sorted(ops, key=lambda op: (op.invoke, op.process))
    for index, op in enumerate(ordered):
        op.index = index
    return ordered
