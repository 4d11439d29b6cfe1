"""Transactions in a partition's producer state, as a crash-recovery property test: random
transactional and plain batches from several producers, COMMIT and ABORT markers (some for
transactions that wrote nothing here), fences (a marker with a newer epoch), refused batches,
rolls and snapshots; then a cut of the active segment at a random byte, the newest snapshot
damaged (every other seed), the offset and time indexes deleted; reopened, and compared with a
model built from the batches that survived: open transactions, the first unstable offset, the
aborted transactions of random fetch windows (from the `.txnindex` files), and each producer's
epoch."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import now_ms
from tests.storage.test_producer_state import crash, damage_after_crash
from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import build_batch
from tidelog.storage import (
    InvalidProducerEpochError,
    InvalidTxnStateError,
    LogManager,
    TopicPartition,
    UnifiedLog,
)

PRODUCERS = 4
STEPS = 220
SEEDS = 10
WINDOWS = 30
COORDINATOR_EPOCH = 0
TXN_INDEX_ENTRY_BYTES = 34


@dataclass
class Producer:
    epoch: int = 0
    next_sequence: int = 0
    open_first: int | None = None


@dataclass(frozen=True)
class Entry:
    """One batch in the log, as the model sees it."""

    kind: str  # "data", "plain", "commit", "abort"
    pid: int
    epoch: int
    first_offset: int
    last_offset: int


def txn_batch(pid: int, epoch: int, sequence: int, count: int, transactional: bool = True) -> bytes:
    base = now_ms()
    records = [(base + i, None, f"{pid}-{sequence + i}".encode(), []) for i in range(count)]
    return build_batch(
        records, producer_id=pid, producer_epoch=epoch, base_sequence=sequence, transactional=transactional
    )


def open_manager(directory: Path) -> LogManager:
    manager = LogManager.open(directory, TopicConfig(internal_segment_bytes=2500))
    if "p" not in manager.topics:
        manager.create_topic("p", 1)
    return manager


@dataclass
class Model:
    open_first: dict[int, int]
    aborted: list[tuple[int, int, int]]
    epochs: dict[int, int]


def model_of(entries: list[Entry]) -> Model:
    """Kafka's rules over the batches in the log, in log order."""
    open_first: dict[int, int] = {}
    aborted: list[tuple[int, int, int]] = []
    epochs: dict[int, int] = {}
    for e in entries:
        if e.kind == "plain":
            continue
        epochs[e.pid] = max(epochs.get(e.pid, e.epoch), e.epoch)
        if e.kind == "data":
            open_first.setdefault(e.pid, e.first_offset)
            continue
        first = open_first.pop(e.pid, None)
        if first is not None and e.kind == "abort":
            aborted.append((e.pid, first, e.last_offset))
    return Model(open_first, aborted, epochs)


def run_random_ops(partition: UnifiedLog, rng: random.Random) -> list[Entry]:
    producers = {2000 + i: Producer() for i in range(PRODUCERS)}
    entries: list[Entry] = []
    for step in range(STEPS):
        pid = rng.choice(sorted(producers))
        p = producers[pid]
        roll = rng.random()
        if roll < 0.1:
            answer = partition.append(build_batch([(now_ms(), None, f"plain-{step}".encode(), [])]))
            entries.append(Entry("plain", -1, -1, answer.first_offset, answer.last_offset))
        elif roll < 0.55:
            count = rng.randint(1, 5)
            answer = partition.append(txn_batch(pid, p.epoch, p.next_sequence, count))
            p.next_sequence += count
            if p.open_first is None:
                p.open_first = answer.first_offset
            entries.append(Entry("data", pid, p.epoch, answer.first_offset, answer.last_offset))
        elif roll < 0.6 and p.open_first is not None:
            with pytest.raises(InvalidTxnStateError):
                partition.append(txn_batch(pid, p.epoch, p.next_sequence, 1, transactional=False))
        elif roll < 0.65 and p.epoch > 0:
            with pytest.raises(InvalidProducerEpochError):
                partition.append_marker(pid, p.epoch - 1, COORDINATOR_EPOCH, aborted=True)
        elif roll < 0.75:  # a fence: an abort under the next epoch
            p.epoch += 1
            p.next_sequence = 0
            p.open_first = None
            answer = partition.append_marker(pid, p.epoch, COORDINATOR_EPOCH, aborted=True)
            entries.append(Entry("abort", pid, p.epoch, answer.first_offset, answer.last_offset))
        else:
            abort = rng.random() < 0.5
            answer = partition.append_marker(pid, p.epoch, COORDINATOR_EPOCH, aborted=abort)
            p.open_first = None
            kind = "abort" if abort else "commit"
            entries.append(Entry(kind, pid, p.epoch, answer.first_offset, answer.last_offset))
    return entries


def assert_matches(partition: UnifiedLog, model: Model, end: int, rng: random.Random) -> None:
    state = partition.producer_state
    assert state.ongoing == model.open_first
    expected_unstable = min(model.open_first.values(), default=None)
    assert partition.first_unstable_offset(end) == expected_unstable
    for pid, epoch in model.epochs.items():
        assert state.producers[pid].epoch == epoch, f"producer {pid}"
    for _ in range(WINDOWS):
        fetch = rng.randrange(end + 1)
        upper = rng.randrange(fetch, end + 1)
        wanted = [a for a in model.aborted if a[2] >= fetch and a[1] < upper]
        assert partition.aborted_ranges(fetch, upper) == wanted, (fetch, upper)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_transactions_survive_a_crash_as_the_model_says(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    directory = tmp_path / "data"
    manager = open_manager(directory)
    partition = manager.partitions[TopicPartition("p", 0)]
    entries = run_random_ops(partition, rng)
    end = partition.log_end_offset
    assert_matches(partition, model_of(entries), end, rng)
    crash(manager)

    log_dir = directory / "p-0"
    # The active segment's aborted-transaction entries lost in part too (their pages never
    # reached the disk though the log's did): the replay after the snapshot appends them again.
    txn_index = sorted(log_dir.glob("*.log"))[-1].with_suffix(".txnindex")
    damage_after_crash(log_dir, rng, corrupt_newest_snapshot=seed % 2 == 0)
    if txn_index.exists():
        kept = rng.randrange(txn_index.stat().st_size // TXN_INDEX_ENTRY_BYTES + 1)
        txn_index.write_bytes(txn_index.read_bytes()[: kept * TXN_INDEX_ENTRY_BYTES])

    manager = open_manager(directory)
    partition = manager.partitions[TopicPartition("p", 0)]
    end = partition.log_end_offset
    survivors = [e for e in entries if e.last_offset < end]
    model = model_of(survivors)
    assert_matches(partition, model, end, rng)
    # The open transactions can still end, and an abort of each is indexed.
    for pid in sorted(model.open_first):
        answer = partition.append_marker(pid, model.epochs[pid], COORDINATOR_EPOCH, aborted=True)
        model.aborted.append((pid, model.open_first[pid], answer.first_offset))
    model.open_first.clear()
    end = partition.log_end_offset
    assert_matches(partition, model, end, rng)
    manager.close()
    reopened = open_manager(directory)
    assert_matches(reopened.partitions[TopicPartition("p", 0)], model, end, rng)
    reopened.close()
