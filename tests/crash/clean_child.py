"""The writer of tests/crash/test_clean_sigkill.py: keyed records into a compacted partition,
cleaning passes between them, and a journal of everything it did.

`python -m tests.crash.clean_child DATA_DIR JOURNAL RUN SEED KILL_OPS` opens the log in DATA_DIR
(LogManager.open), prints `ready`, then loops until it is killed: a cleaning pass (as the
broker's cleaner task runs it: LogManager.clean bounded by the last stable offset), then plain,
idempotent and transactional batches of keyed records (tombstones among them; transactions
committed, aborted, or left open across the next pass), then a flush. KILL_OPS > 0: the process
is run under fsrecord.so in counting mode and kills itself (SIGKILL) right after a random op,
1..KILL_OPS, of a cleaning pass (a pass that ends first arms the next one, with at most its
own op count); KILL_OPS < 0: it kills itself within the first -KILL_OPS ops of its open (the
open finishing a swap a kill cut short, say), and if the open takes fewer, the parent kills it
later; 0: the parent kills it whenever it likes.

Journal lines, appended (O_APPEND, one write each) right after the call they name returned, so
a SIGKILL loses at most the line of the call under way (the page cache keeps everything written):

    R FIRST PID TXN SPEC          a batch was appended (SPEC as the `keys` marker of workload.py)
    B PID EPOCH SEQ COUNT FIRST LAST   ... and it was an idempotent producer's
    M PID EPOCH KIND OFFSET       a COMMIT/ABORT marker was appended
    A DURABLE                     flush() returned
    P BOUND / E FIRST_DIRTY END   a cleaning pass starts / returned (-1 -1: nothing to clean)
    S RUN                         a writer opened the log
"""

from __future__ import annotations

import ctypes
import os
import random
import sys
import time
import uuid
from pathlib import Path

from tests.crash.workload import key_spec, keyed_batch
from tidelog.config import TopicConfig
from tidelog.core.partition import Partition
from tidelog.storage import Cleaner
from tidelog.storage.log_manager import LogManager
from tidelog.storage.unified_log import TopicPartition

TOPIC = "c"
TOPIC_PARTITION = TopicPartition(TOPIC, 0)
GEN = 1  # the values are workload.value_of(TOPIC, GEN, offset)
OVERRIDES = {
    "cleanup.policy": "compact",
    "internal.segment.bytes": "4096",
    "index.interval.bytes": "512",
    "retention.ms": "-1",
    "delete.retention.ms": "0",
    "min.compaction.lag.ms": "0",
    "min.cleanable.dirty.ratio": "0.01",
}
KEYS = 150  # written with a skew: a few hot keys are overwritten all the time
TXN_KEYS = 10  # written by transactions only
TOMBSTONE_SHARE = 0.08
DEDUPE_BUFFER_BYTES = 1 << 20
IDEMPOTENT_PID_BASE = 6000  # + run: each writer run is a new idempotent producer
TXN_PID_BASE = 7000  # + run: and a new transactional producer (its own id; TV1: one epoch)
RUN_SECONDS_MAX = 30.0  # a writer nobody killed stops (the test then fails)


class Journal:
    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def __call__(self, *words: object) -> None:
        os.write(self.fd, (" ".join(map(str, words)) + "\n").encode())


class Writer:
    def __init__(self, manager: LogManager, journal: Journal, run: int, rng: random.Random) -> None:
        self.manager = manager
        self.journal = journal
        self.rng = rng
        self.unified = manager.partitions[TOPIC_PARTITION]
        self.partition = Partition(TOPIC_PARTITION, uuid.uuid4(), self.unified, durable_acks=True)
        self.cleaner = Cleaner(DEDUPE_BUFFER_BYTES)
        self.idempotent = IDEMPOTENT_PID_BASE + run
        self.sequence = 0
        self.txn_pid = TXN_PID_BASE + run
        self.txn_sequence = 0
        self.txn_open = False

    def keys(self, transactional: bool) -> list[tuple[str, bool]]:
        rng = self.rng
        chosen = []
        for _ in range(rng.randint(1, 5)):
            if transactional and rng.random() < 0.5:
                key = f"t{rng.randrange(TXN_KEYS)}"
            else:
                key = f"k{min(int(rng.expovariate(1 / 15)), KEYS - 1)}"
            chosen.append((key, rng.random() < TOMBSTONE_SHARE))
        return chosen

    def batch(self, kind: str) -> None:
        """kind: plain, idempotent or txn."""
        keys = self.keys(kind == "txn")
        first = self.unified.log_end_offset
        if kind == "plain":
            self.unified.append(keyed_batch(TOPIC, GEN, first, keys))
            self.journal("R", first, -1, 0, key_spec(keys))
            return
        if kind == "idempotent":
            pid, sequence = self.idempotent, self.sequence
            appended = self.unified.append(keyed_batch(TOPIC, GEN, first, keys, (pid, 0, sequence)))
            self.sequence += len(keys)
            self.journal("R", first, pid, 0, key_spec(keys))
            self.journal("B", pid, 0, sequence, len(keys), first, appended.last_offset)
            return
        pid, sequence = self.txn_pid, self.txn_sequence
        self.unified.append(keyed_batch(TOPIC, GEN, first, keys, (pid, 0, sequence), transactional=True))
        self.txn_sequence += len(keys)
        self.txn_open = True
        self.journal("R", first, pid, 1, key_spec(keys))

    def end_txn(self, commit: bool) -> None:
        marker = self.unified.append_marker(self.txn_pid, 0, 0, not commit)
        self.txn_open = False
        self.journal("M", self.txn_pid, 0, "COMMIT" if commit else "ABORT", marker.first_offset)

    def flush(self) -> None:
        self.journal("A", self.unified.log.flush())

    def clean(self) -> None:
        bound = self.partition.last_stable_offset
        self.journal("P", bound)
        report = self.manager.clean(self.cleaner, TOPIC_PARTITION, bound, self.unified.active_producers())
        self.journal("E", *((report.first_dirty_offset, report.end_offset) if report else (-1, -1)))

    def step(self) -> None:
        """About a segment's worth of batches, then a flush."""
        rng = self.rng
        for _ in range(rng.randint(8, 20)):
            self.batch("idempotent" if rng.random() < 0.3 else "plain")
            if rng.random() < 0.15:
                self.batch("txn")
        if self.txn_open and rng.random() < 0.75:  # else it stays open across the next pass
            self.end_txn(commit=rng.random() < 0.6)
        self.flush()


def prepare(data_dir: Path, journal_path: Path, steps: int, seed: int) -> None:
    """A compacted partition with history: many segments of overwritten keys, tombstones and
    transactions, a pass now and then; closed cleanly."""
    manager = LogManager.open(data_dir, TopicConfig())
    manager.create_topic(TOPIC, 1, OVERRIDES)
    journal = Journal(journal_path)
    journal("S", 0)
    writer = Writer(manager, journal, 0, random.Random(seed))
    for step in range(steps):
        writer.step()
        if step % 10 == 9:
            writer.clean()
    if writer.txn_open:
        writer.end_txn(commit=True)
        writer.flush()
    manager.close()


def main() -> None:
    data_dir, journal_path, run, seed, kill_ops = Path(sys.argv[1]), Path(sys.argv[2]), *map(int, sys.argv[3:6])
    rng = random.Random(seed)
    kill_after = ctypes.CDLL(None).fsrec_kill_after if kill_ops else None
    if kill_after is not None:
        kill_after.argtypes = [ctypes.c_longlong]
        kill_after.restype = ctypes.c_longlong
    if kill_after is not None and kill_ops < 0:
        kill_after(rng.randint(1, -kill_ops))
    manager = LogManager.open(data_dir, TopicConfig())
    if kill_after is not None and kill_ops < 0:
        kill_after(0)
        kill_after = None
    journal = Journal(journal_path)
    journal("S", run)
    writer = Writer(manager, journal, run, rng)
    print("ready", flush=True)
    arm = kill_ops
    started = time.monotonic()
    while time.monotonic() - started < RUN_SECONDS_MAX:
        if kill_after is not None:
            before = kill_after(rng.randint(1, arm))
            writer.clean()
            ops = kill_after(0) - before  # the pass ended first: the next one, within its length
            arm = ops or arm
        else:
            writer.clean()
        writer.step()
    sys.exit(3)


if __name__ == "__main__":
    main()
