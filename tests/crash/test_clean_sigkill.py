"""SIGKILL during cleaning (issue 15): a writer process (tests/crash/clean_child.py) runs
cleaning passes over a compacted partition in a loop, appending keyed records between them,
and is killed with SIGKILL again and again, restarted each time on the same directory. After
each kill the test opens the directory (LogManager.open: recovery, and the end of any swap cut
short) and checks it with the compact checker of tests/crash/checker.py against the writer's
journal: no `.cleaned` / `.swap` file is left; offsets strictly increase and each record is the
one written at its offset; every record the journal names (a SIGKILL loses nothing the process
wrote: every append that returned counts as acknowledged here) is still served or superseded
(a tombstone, aborted, or a later committed record of its key is there); read_committed gives,
per key, the latest committed record written (nothing for a key whose latest is a tombstone);
the LSO stops at the open transaction, if any; each idempotent producer's last batch is kept
and a retry of it is a duplicate. The test then ends the open transaction (an abort, as the
coordinator's timeout does) and closes the log for the next writer.

Half of the kills come from the test at a random time; the other half the writer makes itself
(fsrecord.so in counting mode, fsrec_kill_after) right after a random file-system op of a
cleaning pass, so every step of a pass and its swaps gets hit, those between the manifest's
commit and its removal included. After one kill in four of those, the next writer starts on
the directory unchecked and kills itself within the first ops of its open (which finishes the
swap cut short, if any); the check comes after that second kill.

50 kills by default (about 30 s); `-m faults` runs 400 (TIDELOG_CLEAN_KILLS overrides both).
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.crash import clean_child, explorer
from tests.crash.checker import (
    CLEANER_LEFTOVER_SUFFIXES,
    CompactView,
    Incarnation,
    Txn,
    Written,
    check_compact_view,
)
from tests.crash.workload import key_spec, parse_key_spec
from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import decode_batch, iter_batches, parse_control_record
from tidelog.storage.log_manager import LogManager

REPO = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("TIDELOG_CLEAN_KILLS", "50"))
LONG_KILLS = int(os.environ.get("TIDELOG_CLEAN_KILLS", "400"))
PREPARE_STEPS = 120  # about 120 segments of history before the first kill
KILL_OPS_MAX = 400  # the first armed pass dies within its first 400 ops; later ones within theirs
KILL_DELAY_S = (0.02, 0.4)  # after the writer is ready
OPEN_KILL_SHARE = 0.25  # of the kills at an op: a kill during the next writer's open follows
OPEN_KILL_OPS_MAX = 40
WRITER_TIMEOUT_S = clean_child.RUN_SECONDS_MAX + 10


@dataclasses.dataclass
class Ledger:
    """The journal, read back."""

    written: dict[int, Written] = dataclasses.field(default_factory=dict)
    txns: list[Txn] = dataclasses.field(default_factory=list)
    open_txns: dict[int, Txn] = dataclasses.field(default_factory=dict)
    markers: dict[int, tuple[int, int, str]] = dataclasses.field(default_factory=dict)
    last_batches: dict[int, tuple[int, int, int, int, int]] = dataclasses.field(default_factory=dict)
    end: int = 0  # past the last offset journaled: appended, so acknowledged for a process crash
    flushed: int = 0
    passes: int = 0  # that cleaned something
    in_pass: bool = False  # the last line is a pass's start: the kill came during it

    def batch(self, first: int, pid: int, transactional: bool, keys: list[tuple[str, bool]]) -> None:
        for i, (key, tombstone) in enumerate(keys):
            self.written[first + i] = Written(key, tombstone, pid, transactional)
        last = first + len(keys) - 1
        if transactional:
            txn = self.open_txns.get(pid)
            if txn is None:
                txn = self.open_txns[pid] = Txn(pid, [])
                self.txns.append(txn)
            txn.batches.append((first, last))
        self.end = max(self.end, last + 1)

    def marker(self, pid: int, epoch: int, kind: str, offset: int, journaled: bool) -> None:
        txn = self.open_txns.pop(pid, None)
        if txn is not None:
            txn.kind, txn.epoch, txn.marker_offset, txn.appended = kind, epoch, offset, journaled
        self.markers[offset] = (pid, epoch, kind)
        if journaled:
            self.end = max(self.end, offset + 1)


def read_journal(path: Path) -> Ledger:
    ledger = Ledger()
    text = path.read_text()
    lines = text.split("\n")[:-1]  # a line cut by the kill has no newline (never seen: one write)
    for line in lines:
        words = line.split()
        kind = words[0]
        if kind == "R":
            ledger.batch(int(words[1]), int(words[2]), words[3] == "1", parse_key_spec(words[4]))
        elif kind == "B":
            pid, epoch, seq, count, first, last = map(int, words[1:])
            ledger.last_batches[pid] = (epoch, seq, count, first, last)
        elif kind == "M":
            ledger.marker(int(words[1]), int(words[2]), words[3], int(words[4]), journaled=True)
        elif kind == "A":
            ledger.flushed = max(ledger.flushed, int(words[1]))
        elif kind == "P":
            ledger.in_pass = True
        elif kind == "E":
            ledger.in_pass = False
            ledger.passes += words[1] != "-1"
    return ledger


def add_unjournaled_tail(ledger: Ledger, manager: LogManager, journal: clean_child.Journal) -> int:
    """The batches the writer appended but was killed before journaling (past the journal's
    end; never cleaned, being past every flush): taken from the log as they read (the checker
    still checks each value against its offset), and journaled now for the next checks.
    Returns how many."""
    log = manager.partitions[clean_child.TOPIC_PARTITION].log
    offset, end, found = ledger.end, log.log_end_offset, 0
    while offset < end and (piece := log.read(offset, 1 << 16, end)) is not None:
        for header, raw in iter_batches(piece.read()):
            if header.base_offset < ledger.end:
                continue
            found += 1
            records = decode_batch(raw)[1]
            if header.is_control:
                marker, _ = parse_control_record(records[0][2], records[0][3])
                pid, epoch = header.producer_id, header.producer_epoch
                ledger.marker(pid, epoch, marker.name, header.base_offset, journaled=False)
                journal("M", pid, epoch, marker.name, header.base_offset)
                continue
            keys = [(key.decode(), value is None) for _, _, key, value, _ in records]
            assert len(keys) == header.last_offset - header.base_offset + 1, header
            pid = header.producer_id
            ledger.batch(header.base_offset, pid, header.is_transactional, keys)
            journal("R", header.base_offset, pid, int(header.is_transactional), key_spec(keys))
            if pid >= 0 and not header.is_transactional:
                sequence_fields = (header.producer_epoch, header.base_sequence, len(keys))
                journal("B", pid, *sequence_fields, header.base_offset, header.last_offset)
        offset = piece.last_offset + 1
    return found


def cleaner_files(directory: Path) -> Counter[str]:
    names = [p.name for p in directory.iterdir()]
    return Counter(suffix for name in names for suffix in CLEANER_LEFTOVER_SUFFIXES if name.endswith(suffix))


def check_after_kill(data_dir: Path, journal_path: Path, stats: Counter[str]) -> None:
    """Opens and checks the directory (an AssertionError says what is wrong), ends the open
    transaction, journals its marker and closes the log cleanly."""
    ledger = read_journal(journal_path)
    partition_dir = data_dir / clean_child.TOPIC_PARTITION.directory_name()
    before = cleaner_files(partition_dir)
    stats["kills"] += 1
    stats["kills inside a pass"] += ledger.in_pass
    stats["kills leaving .cleaned files"] += before[".cleaned"] > 0
    stats["kills leaving a committed swap (.swap)"] += before[".swap"] > 0
    try:
        manager = LogManager.open(data_dir, TopicConfig())
    except Exception as error:
        raise AssertionError(f"refused: the open fails: {type(error).__name__}: {error}") from None
    journal = clean_child.Journal(journal_path)
    try:
        stats["unjournaled batches"] += add_unjournaled_tail(ledger, manager, journal)
        unified = manager.partitions[clean_child.TOPIC_PARTITION]
        view = CompactView.of("c-0", unified, ledger.end, ledger.written, ledger.txns)
        incarnation = Incarnation(clean_child.TOPIC, clean_child.GEN, "", 1, 0)
        outcome, detail = check_compact_view(
            view, partition_dir, incarnation, ledger.markers, ledger.last_batches, ledger.txns, probe_append=False
        )
        assert outcome == "ok", f"{outcome}: {detail}"
        stats["records served after the last kill"] = len(view.served)
        stats["records written"] = len(ledger.written)
        for offset, (pid, epoch, kind) in sorted(view.ending_markers.items()):
            journal("M", pid, epoch, kind, offset)
            stats["open transactions aborted"] += 1
    finally:
        manager.close()
    stats["passes that cleaned"] = ledger.passes


def adopt_uncommitted_swap(partition_dir: Path) -> bool:
    """Sabotage: what an open that trusted a pass's files without its committed manifest would
    do: `.cleaned` files take the place of the segment they are named for (the others the pass
    meant to replace stay). Returns whether there was any."""
    names = [p.name for p in partition_dir.iterdir()]
    if any(name.endswith(".swap") for name in names):
        return False
    cleaned = [name for name in names if name.endswith(".cleaned")]
    for name in cleaned:
        os.replace(partition_dir / name, partition_dir / name.removesuffix(".cleaned"))
    return bool(cleaned)


def drop_manifest(partition_dir: Path) -> bool:
    """Sabotage: what an open that did not know the manifests would do: a committed swap's
    manifest is deleted, so the open takes its `.cleaned` files for a pass cut short."""
    manifests = [p for p in partition_dir.iterdir() if p.name.endswith(".swap")]
    for manifest in manifests:
        manifest.unlink()
    return bool(manifests)


SABOTAGES = {"adopt_uncommitted_swap": adopt_uncommitted_swap, "drop_manifest": drop_manifest}


def kill_writer(
    data_dir: Path, journal_path: Path, run: int, rng: random.Random, seed: int, interposer: Path | None, kill_ops: int
) -> bool:
    """Runs one writer until it is killed: by itself (`interposer`: see clean_child's KILL_OPS),
    else by the test at a random time after it is ready. Returns whether it died before it was
    ready."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "python"), str(REPO)])}
    if interposer is not None:
        env |= {"LD_PRELOAD": str(interposer), "TIDELOG_FSREC_ROOT": str(data_dir.resolve())}
    else:
        kill_ops = 0
    args = [str(data_dir), str(journal_path), str(run), str(rng.randrange(1 << 30)), str(kill_ops)]
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.crash.clean_child", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        ready = child.stdout.readline().strip() == b"ready"
        if ready and kill_ops <= 0:
            time.sleep(rng.uniform(*KILL_DELAY_S))
            child.send_signal(signal.SIGKILL)
        child.wait(WRITER_TIMEOUT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    assert child.returncode == -signal.SIGKILL, (
        f"writer {run} ended with {child.returncode}, not by SIGKILL (seed {seed}): {stderr[:2000]} ... "
        f"{stderr[-2000:]}"
    )
    return not ready


def run_kills(work: Path, kills: int, seed: int, sabotage: str = "", by_op_only: bool = False) -> Counter[str]:
    rng = random.Random(seed)
    data_dir, journal_path = work / "data", work / "journal"
    shutil.rmtree(data_dir, ignore_errors=True)
    journal_path.unlink(missing_ok=True)
    clean_child.prepare(data_dir, journal_path, PREPARE_STEPS, seed)
    interposer = explorer.build_interposer(work) if shutil.which("gcc") else None
    stats: Counter[str] = Counter()
    for run in range(1, kills + 1):
        by_op = interposer is not None and (by_op_only or run % 2 == 0)
        kill_writer(data_dir, journal_path, run, rng, seed, interposer if by_op else None, KILL_OPS_MAX)
        if by_op and not by_op_only and rng.random() < OPEN_KILL_SHARE:
            pending = cleaner_files(data_dir / clean_child.TOPIC_PARTITION.directory_name())[".swap"] > 0
            died = kill_writer(data_dir, journal_path, run + kills, rng, seed, interposer, -OPEN_KILL_OPS_MAX)
            stats["kills during the open that followed" if died else "opens that lived (killed later)"] += 1
            stats["kills during an open with a swap to finish"] += died and pending
        stats["kills by the test" if not by_op else "kills at an op of a pass"] += 1
        if sabotage:
            stats["sabotaged"] += SABOTAGES[sabotage](data_dir / clean_child.TOPIC_PARTITION.directory_name())
        try:
            check_after_kill(data_dir, journal_path, stats)
        except AssertionError as error:
            how = "at an op" if by_op else "by time"
            raise AssertionError(f"after kill {run} (seed {seed}, {how}): {error}") from None
    return stats


def assert_kills_hit_passes(stats: Counter[str], kills: int) -> None:
    print(dict(stats))
    assert stats["kills"] == kills
    assert stats["kills inside a pass"] >= kills // 2  # every op-kill, and some of the others
    assert stats["kills leaving .cleaned files"] >= kills // 10
    assert stats["passes that cleaned"] >= kills
    assert stats["records served after the last kill"] * 3 < stats["records written"]  # it compacts


def test_sigkill_during_cleaning_loses_only_superseded_records(tmp_path: Path) -> None:
    stats = run_kills(tmp_path, KILLS, seed=int(os.environ.get("TIDELOG_CLEAN_SEED", "1")))
    assert_kills_hit_passes(stats, KILLS)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="kills at an op need the interposer (gcc)")
@pytest.mark.parametrize(
    ("sabotage", "seed", "seen"),
    # A cleaned segment beside the ones it replaced: the open refuses the overlap (or, were it to
    # open, the checker's segments_mixed would fail it).
    [("drop_manifest", 1, "acked_loss"), ("adopt_uncommitted_swap", 3, "segments_mixed|CorruptLogError")],
)
def test_sabotaged_opens_are_seen(tmp_path: Path, sabotage: str, seed: int, seen: str) -> None:
    """Before each open the test does what a wrong open would: deletes the committed manifests
    (`drop_manifest`: the `.cleaned` files go, the old segments already deleted stay gone), or
    renames `.cleaned` files into place without one (`adopt_uncommitted_swap`: the cleaned
    segment beside the old ones it was to replace). The checks must fail (kills at ops only, so
    that the seed decides where)."""
    with pytest.raises(AssertionError, match=seen):
        run_kills(tmp_path, 30, seed=seed, sabotage=sabotage, by_op_only=True)


@pytest.mark.faults
def test_sigkill_during_cleaning_long(tmp_path: Path) -> None:
    stats = run_kills(tmp_path, LONG_KILLS, seed=int(os.environ.get("TIDELOG_CLEAN_SEED", "2")))
    assert_kills_hit_passes(stats, LONG_KILLS)
