"""Crash-state exploration (ALICE-style) of the storage engine.

1. `record()` builds `fsrecord.c` with gcc and runs a workload (tests/crash/workload.py) under
   it: every file-system operation under the data directory goes to an op log, with a marker
   after each acknowledgement.
2. `explore()` replays the op log through a model of the file system. At each crash point
   (after op k) the model knows, per file, its content at its last fsync/fdatasync and the
   writes and truncations since; per directory, its entries at its last fsync and the entry
   changes since. From that it builds crash states (see MODES), writes each into a fresh
   directory, opens it with the real engine (LogManager.open, in this process) and checks it
   against what had been acknowledged before op k (`check_state`).

Ordering rules modelled (POSIX, with ext4 data=ordered in mind, as ALICE and LazyFS do):
- fsync/fdatasync of a file makes its data (and size) durable; nothing else does.
- Un-synced writes of a file are lost, kept, or torn: "prefix" keeps the writes in order up to
  some point, the last one possibly cut at a 512-byte sector boundary; "reorder" keeps any
  subset of them, each sector of each write independently (holes read as zeros).
- Files are independent: any file's choice goes with any other's (cross-file reordering).
- A directory's entries (create, rename, unlink, mkdir, rmdir) are durable only after an fsync
  of that directory; un-synced changes of one directory persist as a prefix in order (renames
  are atomic, but may be dropped with everything after them in that directory).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

SECTOR = 512
SOURCE = Path(__file__).with_name("fsrecord.c")
REPO = Path(__file__).resolve().parents[2]
MODES = ("synced", "all", "prefix", "reorder")
LEGAL_EVERYWHERE = ("synced", "all", "prefix")  # a refusal of one of these is a bug


def build_interposer(directory: Path) -> Path:
    """Compiles fsrecord.c into `directory` (gcc; no prebuilt binary is kept)."""
    out = directory / "fsrecord.so"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", str(out), str(SOURCE), "-ldl"],
        check=True,
    )
    return out


@dataclasses.dataclass
class Recording:
    scenario: str
    root: Path  # the data directory as recorded (canonical)
    ops: list[list[str]]
    data: bytes


def record(
    scenario: str, work: Path, seed: int, interposer: Path, drop_sync: bool | str = False, sabotage: str = ""
) -> Recording:
    """Runs the workload in a fresh process under the interposer; returns its op log.
    `drop_sync`: True drops every fsync/fdatasync, a string those of files named with that
    ending (sabotage: TIDELOG_FSREC_DROP_SYNC of fsrecord.c)."""
    data_dir = (work / f"{scenario}-data").resolve()
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    prefix = work / f"{scenario}-rec"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "python"), str(REPO)]),
        "LD_PRELOAD": str(interposer),
        "TIDELOG_FSREC_ROOT": str(data_dir),
        "TIDELOG_FSREC_LOG": str(prefix),
        "TIDELOG_FSREC_DROP_SYNC": drop_sync if isinstance(drop_sync, str) else "1" if drop_sync else "0",
        "TIDELOG_CRASH_SABOTAGE": sabotage,
    }
    subprocess.run(
        [sys.executable, "-m", "tests.crash.workload", scenario, str(data_dir), str(seed)],
        env=env,
        check=True,
        cwd=REPO,
    )
    ops = [line.split("\t") for line in Path(f"{prefix}.ops").read_text().splitlines()]
    return Recording(scenario, data_dir, ops, Path(f"{prefix}.data").read_bytes())


def delete_old_segments_before_commit(recording: Recording) -> Recording:
    """Sabotage of the compact scenario, on the trace: the deletions of the segments each swap
    replaces are moved to just before its manifest is made, as a swap that deleted the old
    segments before its commit would do (the engine itself is not changed). The explorer must
    then find crash states that lost acknowledged records."""
    ops = recording.ops
    moved: dict[int, list[int]] = {}  # index of a manifest's creation -> deletions moved before it
    taken: set[int] = set()
    for at, op in enumerate(ops):
        if op[0] != "O" or not op[2].endswith(".swap.tmp"):
            continue
        manifest = op[2].removesuffix(".tmp")
        renamed = next(i for i in range(at, len(ops)) if ops[i][0] == "R" and ops[i][1] == op[2])
        done = next((i for i in range(renamed, len(ops)) if ops[i][0] == "U" and ops[i][1] == manifest), len(ops))
        # The old segments leave the log by a rename to `<file>.deleted` (the background deleter
        # cuts and unlinks them later).
        old = [
            i
            for i in range(renamed, done)
            if ops[i][0] == "R"
            and ops[i][1].endswith((".log", ".index", ".timeindex", ".txnindex"))
            and ops[i][2].endswith(".deleted")
        ]
        moved[at] = old
        taken.update(old)
    reordered = []
    for at, op in enumerate(ops):
        reordered.extend(ops[i] for i in moved.get(at, []))
        if at not in taken:
            reordered.append(op)
    assert len(reordered) == len(ops) and taken
    return dataclasses.replace(recording, ops=reordered)


# Sabotages of the recorded trace, by name (TIDELOG_CRASH_SABOTAGE names the workload's own).
TRACE_SABOTAGES = {"swap_deletes_first": delete_old_segments_before_commit}
# Sabotages by the interposer: fsyncs dropped for files whose name ends so.
SYNC_SABOTAGES = {"cleaned_unsynced": ".cleaned"}


def points_in_passes(recording: Recording) -> int:
    """How many ops of the recording fall inside a cleaning pass (between its markers)."""
    inside, count = False, 0
    for op in recording.ops:
        if op[0] == "M":
            word = op[1].split()[0]
            inside = word == "clean?" or (inside and word != "clean")
        elif inside and op[0] not in ("C",):
            count += 1
    return count


# ---- the file-system model ------------------------------------------------------------------


class FileNode:
    __slots__ = ("durable", "current", "pending")

    def __init__(self) -> None:
        self.durable = b""
        self.current = bytearray()
        self.pending: list[tuple[str, int, bytes]] = []  # ("w", offset, bytes) | ("t", size, b"")

    def apply(self, op: tuple[str, int, bytes]) -> None:
        self.pending.append(op)
        apply_to(self.current, op)

    def sync(self) -> None:
        self.durable = bytes(self.current)
        self.pending = []


class DirNode:
    __slots__ = ("durable", "current", "pending")

    def __init__(self) -> None:
        self.durable: dict[str, FileNode | DirNode] = {}
        self.current: dict[str, FileNode | DirNode] = {}
        # ("add", name, node) | ("del", name, None) | ("mv", old, new)
        self.pending: list[tuple[str, str, object]] = []

    def change(self, op: tuple[str, str, object]) -> None:
        self.pending.append(op)
        apply_entry(self.current, op)

    def sync(self) -> None:
        self.durable = dict(self.current)
        self.pending = []


def apply_to(content: bytearray, op: tuple[str, int, bytes]) -> None:
    kind, at, data = op
    if kind == "w":
        if at > len(content):
            content.extend(bytes(at - len(content)))
        content[at : at + len(data)] = data
    elif at < len(content):
        del content[at:]
    else:
        content.extend(bytes(at - len(content)))


def apply_entry(entries: dict[str, FileNode | DirNode], op: tuple[str, str, object]) -> None:
    kind, name, other = op
    if kind == "add":
        assert isinstance(other, FileNode | DirNode)
        entries[name] = other
    elif kind == "del":
        entries.pop(name, None)
    else:
        assert isinstance(other, str)
        node = entries.pop(name, None)
        if node is not None:
            entries[other] = node


class Model:
    """The file system under the recorded root, as the op log changes it."""

    def __init__(self, root: Path, data: bytes) -> None:
        self.root_path = root
        self.root = DirNode()  # the data directory existed (durably) before the workload
        self.fds: dict[int, FileNode | DirNode] = {}
        self.data = data

    def lookup(self, path: str) -> tuple[DirNode, str]:
        """The (current) parent directory node of `path` and its last component."""
        parts = Path(path).relative_to(self.root_path).parts
        node: FileNode | DirNode = self.root
        for part in parts[:-1]:
            assert isinstance(node, DirNode), path
            node = node.current[part]
        assert isinstance(node, DirNode), path
        return node, parts[-1]

    def node_at(self, path: str) -> FileNode | DirNode | None:
        if Path(path) == self.root_path:
            return self.root
        parent, name = self.lookup(path)
        return parent.current.get(name)

    def step(self, op: list[str]) -> None:
        kind = op[0]
        if kind == "O":
            fd, path, flags = int(op[1]), op[2], int(op[3])
            node = self.node_at(path)
            if node is None:
                node = FileNode()
                parent, name = self.lookup(path)
                parent.change(("add", name, node))
            elif flags & os.O_TRUNC and isinstance(node, FileNode) and node.current:
                node.apply(("t", 0, b""))
            self.fds[int(fd)] = node
        elif kind == "C":
            self.fds.pop(int(op[1]), None)
        elif kind == "W":
            node = self.fds[int(op[1])]
            assert isinstance(node, FileNode)
            at, length, data_at = int(op[2]), int(op[3]), int(op[4])
            node.apply(("w", at, self.data[data_at : data_at + length]))
        elif kind == "T":
            node = self.fds[int(op[1])]
            assert isinstance(node, FileNode)
            node.apply(("t", int(op[2]), b""))
        elif kind == "TP":
            node = self.node_at(op[1])
            assert isinstance(node, FileNode)
            node.apply(("t", int(op[2]), b""))
        elif kind == "F":
            node = self.fds[int(op[1])]
            assert isinstance(node, FileNode)
            mode, at, length = int(op[2]), int(op[3]), int(op[4])
            if mode == 0 and at + length > len(node.current):  # extends the size with zeros
                node.apply(("t", at + length, b""))
        elif kind == "S":
            self.fds[int(op[1])].sync()
        elif kind in ("U", "D"):
            parent, name = self.lookup(op[1])
            parent.change(("del", name, None))
        elif kind == "K":
            parent, name = self.lookup(op[1])
            parent.change(("add", name, DirNode()))
        elif kind == "R":
            source_dir, source = self.lookup(op[1])
            target_dir, target = self.lookup(op[2])
            if source_dir is target_dir:
                source_dir.change(("mv", source, target))
            else:  # not done by the engine; modelled as two independent entry changes
                node = source_dir.current[source]
                source_dir.change(("del", source, None))
                target_dir.change(("add", target, node))
        elif kind != "M":
            raise ValueError(f"unknown op {op}")


def file_variant(node: FileNode, mode: str, rng: random.Random) -> bytes:
    if mode == "synced" or not node.pending:
        return node.durable if mode != "all" else bytes(node.current)
    if mode == "all":
        return bytes(node.current)
    content = bytearray(node.durable)
    if mode == "prefix":
        keep = rng.randint(0, len(node.pending))
        for op in node.pending[:keep]:
            apply_to(content, op)
        if keep < len(node.pending) and rng.random() < 0.5:
            kind, at, data = node.pending[keep]
            cuts = [b for b in range((at // SECTOR + 1) * SECTOR, at + len(data), SECTOR)]
            if kind == "w" and cuts:
                apply_to(content, ("w", at, data[: rng.choice(cuts) - at]))
        return bytes(content)
    for kind, at, data in node.pending:  # reorder: any subset, sector by sector
        if kind == "t":
            if rng.random() < 0.5:
                apply_to(content, (kind, at, data))
            continue
        start = at
        while start < at + len(data):
            end = min(at + len(data), (start // SECTOR + 1) * SECTOR)
            if rng.random() < 0.5:
                apply_to(content, ("w", start, data[start - at : end - at]))
            start = end
    return bytes(content)


def entries_variant(node: DirNode, mode: str, rng: random.Random) -> dict[str, FileNode | DirNode]:
    if mode == "synced":
        return node.durable
    if mode == "all" or not node.pending:
        return node.current
    entries = dict(node.durable)
    for op in node.pending[: rng.randint(0, len(node.pending))]:
        apply_entry(entries, op)
    return entries


def materialize(model: Model, mode: str, rng: random.Random) -> dict[str, bytes | None]:
    """One crash state: relative path to file content (None: a directory)."""
    state: dict[str, bytes | None] = {}

    def walk(node: DirNode, prefix: str) -> None:
        for name, child in sorted(entries_variant(node, mode, rng).items()):
            path = f"{prefix}{name}"
            if isinstance(child, DirNode):
                state[path] = None
                walk(child, path + "/")
            else:
                state[path] = file_variant(child, mode, rng)

    walk(model.root, "")
    return state


def signature(state: dict[str, bytes | None]) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for path, content in sorted(state.items()):
        digest.update(path.encode() + b"\0")
        digest.update(b"D" if content is None else hashlib.blake2b(content, digest_size=16).digest())
    return digest.digest()


def write_state(state: dict[str, bytes | None], directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for path, content in state.items():  # sorted: a directory comes before its files
        target = directory / path
        if content is None:
            target.mkdir()
        else:
            target.write_bytes(content)


# ---- exploration ----------------------------------------------------------------------------


@dataclasses.dataclass
class Summary:
    scenario: str
    ops: int = 0
    crash_points: int = 0
    pass_ops: int = 0  # ops of the recordings inside cleaning passes (points_in_passes)
    states: int = 0
    by_mode: Counter[str] = dataclasses.field(default_factory=Counter)
    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)
    failures: list[str] = dataclasses.field(default_factory=list)

    def problems(self, legal_only: bool = True) -> list[str]:
        return [f for f in self.failures if not legal_only or not f.startswith("reorder")]


def crash_points(recording: Recording) -> Iterator[tuple[int, Model]]:
    """(k, model after ops[:k]) for every k at which the durable or possible state changed."""
    model = Model(recording.root, recording.data)
    yield 0, model
    for k, op in enumerate(recording.ops, start=1):
        model.step(op)
        if op[0] not in ("M", "C"):
            yield k, model


def explore(
    recording: Recording,
    samples: dict[str, int],
    seed: int,
    work: Path,
    point_stride: int = 1,
    max_failures: int = 20,
) -> Summary:
    """Builds `samples[mode]` crash states per crash point (every `point_stride`-th point;
    duplicates skipped), checks each, and sums up."""
    from tests.crash.checker import Expectations, check_state

    summary = Summary(recording.scenario, ops=len(recording.ops), pass_ops=points_in_passes(recording))
    rng = random.Random(seed)
    seen: set[tuple[bytes, int]] = set()
    kinds: set[tuple[str, str]] = set()  # the first failure of each kind is always kept
    state_dir = work / "state"
    expectations = Expectations(recording.ops)
    quiet = logging.getLogger("tidelog")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # recovery warnings are expected by the thousand
    try:
        for index, (k, model) in enumerate(crash_points(recording)):
            if index % point_stride:
                continue
            summary.crash_points += 1
            expected = expectations.at(k)
            for mode in MODES:
                for _ in range(samples.get(mode, 0)):
                    state = materialize(model, mode, rng)
                    key = (signature(state), expected.markers_seen)
                    if key in seen:
                        continue
                    seen.add(key)
                    write_state(state, state_dir)
                    outcome, detail = check_state(state_dir, expected)
                    summary.states += 1
                    summary.by_mode[mode] += 1
                    summary.outcomes[f"{mode}:{outcome}"] += 1
                    first_of_kind = (mode, outcome) not in kinds
                    kinds.add((mode, outcome))
                    if outcome != "ok" and (first_of_kind or len(summary.failures) < max_failures):
                        summary.failures.append(
                            f"{mode} crash after op {k} {recording.ops[k - 1]}: {outcome}: {detail}"
                        )
    finally:
        quiet.setLevel(level)
        shutil.rmtree(state_dir, ignore_errors=True)
    return summary


def scratch_dir() -> Path:
    """Where crash states are written: tmpfs when there is one (thousands of small files)."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="tidelog-crash-", dir=base))


def split_outcomes(summary: Summary) -> tuple[Counter[str], Counter[str]]:
    """Outcome counts of the states legal under every model, and of the reordered ones."""
    legal: Counter[str] = Counter()
    reorder: Counter[str] = Counter()
    for key, count in summary.outcomes.items():
        mode, outcome = key.split(":", 1)
        (reorder if mode == "reorder" else legal)[outcome] += count
    return legal, reorder


def table_rows(summaries: list[Summary]) -> list[str]:
    rows = [
        "| scenario | ops | crash points | states (synced/all/prefix/reorder) | ok | acked losses "
        "| corrupt reads | phantom duplicates | resurrected deletes | LSO past open txn | LSO stuck "
        "| aborted-txn index wrong | refusals | holes | other | refusals (reorder) | other (reorder) |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for s in summaries:
        legal, reorder = split_outcomes(s)
        other = sum(legal[k] for k in ("open_error", "broken_after", "retry_refused", "leftover", "segments_mixed"))
        reorder_other = sum(v for k, v in reorder.items() if k not in ("ok", "refused"))
        modes = "/".join(str(s.by_mode[m]) for m in MODES)
        rows.append(
            f"| {s.scenario} | {s.ops} | {s.crash_points} | {s.states} ({modes}) | {legal['ok'] + reorder['ok']} "
            f"| {legal['acked_loss']} | {legal['corrupt_read']} | {legal['phantom_duplicate']} "
            f"| {legal['resurrected']} | {legal['lso_past_open']} | {legal['lso_stuck']} "
            f"| {legal['abort_exposed'] + legal['txnindex_phantom']} | {legal['refused']} "
            f"| {legal['gap']} | {other} | {reorder['refused']} | {reorder_other} |"
        )
    return rows


SCENARIOS = ("roll", "topics", "txn", "compact")
# Crash states built per crash point and mode (duplicates are skipped, so fewer are checked).
FULL_SAMPLES = {"synced": 1, "all": 1, "prefix": 8, "reorder": 4}
FULL_SEEDS = (1, 2, 3, 4, 5)
CI_SAMPLES = {"synced": 1, "all": 1, "prefix": 4, "reorder": 2}
CI_SEEDS = (1,)


def run(
    work: Path,
    seeds: tuple[int, ...],
    samples: dict[str, int],
    point_stride: int = 1,
    drop_sync: bool = False,
    scenarios: tuple[str, ...] = SCENARIOS,
    sabotage: str = "",
) -> list[Summary]:
    """Records each scenario once per seed and explores it; one summary per scenario."""
    work.mkdir(parents=True, exist_ok=True)
    interposer = build_interposer(work)
    merged: dict[str, Summary] = {}
    if sabotage in SYNC_SABOTAGES:
        drop_sync = SYNC_SABOTAGES[sabotage]
    for seed in seeds:
        for scenario in scenarios:
            recording = record(scenario, work, seed, interposer, drop_sync=drop_sync, sabotage=sabotage)
            if sabotage in TRACE_SABOTAGES:
                recording = TRACE_SABOTAGES[sabotage](recording)
            summary = explore(recording, samples, seed, work / "explore", point_stride)
            total = merged.setdefault(scenario, Summary(scenario))
            total.ops += summary.ops
            total.crash_points += summary.crash_points
            total.pass_ops += summary.pass_ops
            total.states += summary.states
            total.by_mode.update(summary.by_mode)
            total.outcomes.update(summary.outcomes)
            total.failures.extend(summary.failures)
    return list(merged.values())
