"""Producer state in process: the rules against a model, snapshots, producer-id blocks, and the
crash-recovery property test (random appends from several producers, a cut at a random byte,
the newest snapshot corrupted, indexes deleted, reload, compare with the model)."""

from __future__ import annotations

import json
import os
import random
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import now_ms
from tidelog import limits
from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import build_batch
from tidelog.storage import (
    InvalidProducerEpochError,
    LogManager,
    OutOfOrderSequenceError,
    ProducerIdAllocator,
    ProducerStateManager,
    TopicPartition,
    UnifiedLog,
)
from tidelog.storage.producer_state import SnapshotError, last_sequence_of, snapshot_offsets

INT32_MAX = 2**31 - 1
PRODUCERS = 4
STEPS = 160
SEEDS = 12


def producer_batch(pid: int, epoch: int, sequence: int, count: int, tag: int = 0) -> bytes:
    base = now_ms()
    records = [(base + i, None, f"{pid}-{tag}-{i}".encode(), []) for i in range(count)]
    return build_batch(records, producer_id=pid, producer_epoch=epoch, base_sequence=sequence)


def plain_batch(tag: int) -> bytes:
    return build_batch([(now_ms(), None, f"plain-{tag}".encode(), [])])


@dataclass
class ModelProducer:
    epoch: int
    next_sequence: int
    batches: deque[tuple[int, int, int, int, bytes]] = field(
        default_factory=lambda: deque(maxlen=limits.PRODUCER_BATCHES_KEPT)
    )


@dataclass(frozen=True)
class Appended:
    pid: int
    epoch: int
    first_sequence: int
    last_sequence: int
    first_offset: int
    last_offset: int
    records: bytes


def model_of(appended: list[Appended]) -> dict[int, ModelProducer]:
    """Producer state as Kafka defines it, from the producer batches in the log."""
    model: dict[int, ModelProducer] = {}
    for a in appended:
        producer = model.get(a.pid)
        if producer is None or producer.epoch != a.epoch:
            producer = model[a.pid] = ModelProducer(a.epoch, 0)
        producer.batches.append((a.first_sequence, a.last_sequence, a.first_offset, a.last_offset, a.records))
        producer.next_sequence = 0 if a.last_sequence == INT32_MAX else a.last_sequence + 1
    return model


def open_manager(directory: Path, segment_bytes: int = 3000) -> LogManager:
    config = TopicConfig(internal_segment_bytes=segment_bytes)
    manager = LogManager.open(directory, config)
    if "p" not in manager.topics:
        manager.create_topic("p", 1)
    return manager


def crash(manager: LogManager) -> None:
    """Stops as SIGKILL would: background snapshot writes finish (they are in the page cache
    then), but nothing is closed cleanly."""
    manager.executor.shutdown(wait=True)
    manager.partitions.clear()
    manager._lock.close()


def damage_after_crash(log_dir: Path, rng: random.Random, corrupt_newest_snapshot: bool) -> Path:
    """What a crash can leave: the active segment cut at a random byte, the newest snapshot
    damaged (if asked), the offset and time indexes gone. Returns the newest snapshot's path."""
    segments = sorted(log_dir.glob("*.log"))
    assert len(segments) > 3, "the log rolled, so snapshots were taken"
    active = segments[-1]
    active.write_bytes(active.read_bytes()[: rng.randrange(active.stat().st_size + 1)])
    snapshots = snapshot_offsets(log_dir)
    assert snapshots
    newest = log_dir / f"{snapshots[-1]:020d}.snapshot"
    if corrupt_newest_snapshot:
        data = bytearray(newest.read_bytes())
        data[rng.randrange(len(data))] ^= 0xFF
        newest.write_bytes(bytes(data))
    for index in [*log_dir.glob("*.index"), *log_dir.glob("*.timeindex")]:
        os.remove(index)
    return newest


def assert_state_matches(partition: UnifiedLog, model: dict[int, ModelProducer]) -> None:
    producers = partition.producer_state.producers
    assert set(producers) == set(model)
    for pid, expected in model.items():
        entry = producers[pid]
        assert entry.epoch == expected.epoch
        got = [(b.first_sequence, b.last_sequence, b.first_offset, b.last_offset) for b in entry.batches]
        assert got == [b[:4] for b in expected.batches], f"producer {pid}"


def test_rules_against_a_small_model() -> None:
    state = ProducerStateManager(Path("unused"))
    assert state.check(5, 0, 17, 19) is None, "no state: any sequence"
    state.record(5, 0, 17, 19, last_offset=2, offset_delta=2, timestamp=1, log_append_time=False)
    assert state.check(5, 0, 17, 19).first_offset == 0  # type: ignore[union-attr]
    assert state.check(5, 0, 20, 20) is None
    with pytest.raises(OutOfOrderSequenceError):
        state.check(5, 0, 21, 21)
    with pytest.raises(OutOfOrderSequenceError):
        state.check(5, 1, 3, 3)
    assert state.check(5, 1, 0, 0) is None
    state.record(5, 1, 0, 0, last_offset=3, offset_delta=0, timestamp=2, log_append_time=False)
    with pytest.raises(InvalidProducerEpochError):
        state.check(5, 0, 20, 20)
    assert last_sequence_of(INT32_MAX - 1, 3) == 1 and last_sequence_of(INT32_MAX, 0) == INT32_MAX
    assert state.expire(now_ms=1001, expiration_ms=1000) == 0 and state.expire(now_ms=1002, expiration_ms=1000) == 1


def test_snapshots_round_trip_and_every_damage_is_detected() -> None:
    state = ProducerStateManager(Path("unused"))
    for pid in range(3):
        for n in range(7):
            state.record(
                pid,
                2,
                n * 10,
                n * 10 + 9,
                last_offset=100 * pid + n,
                offset_delta=9,
                timestamp=n,
                log_append_time=n % 2 == 0,
            )
    data = state.snapshot_bytes()
    loaded = ProducerStateManager.parse_snapshot(data)
    assert {pid: list(e.batches) for pid, e in loaded.items()} == {
        pid: list(e.batches) for pid, e in state.producers.items()
    }
    assert all(len(e.batches) == limits.PRODUCER_BATCHES_KEPT for e in loaded.values()), "all five batches are kept"
    rng = random.Random(7)
    for _ in range(200):
        at = rng.randrange(len(data))
        damaged = data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]
        with pytest.raises(SnapshotError):
            ProducerStateManager.parse_snapshot(damaged)
        with pytest.raises(SnapshotError):
            ProducerStateManager.parse_snapshot(data[:at])


def test_producer_ids_come_from_persisted_blocks_and_are_never_reused(tmp_path: Path) -> None:
    allocator = ProducerIdAllocator(tmp_path, block_size=10)
    first = [allocator.allocate() for _ in range(13)]
    assert first == list(range(13))
    assert json.loads((tmp_path / "producer-ids.json").read_text())["next_block_start"] == 20, "persisted before use"
    after_crash = ProducerIdAllocator(tmp_path, block_size=10)
    assert after_crash.allocate() == 20, "the rest of the block in use is skipped, never handed out"
    (tmp_path / "producer-ids.json").write_text("{broken")
    with pytest.raises(RuntimeError, match="damaged"):
        ProducerIdAllocator(tmp_path)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_crash_recovery_rebuilds_the_state_of_the_surviving_log(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    directory = tmp_path / "data"
    manager = open_manager(directory)
    partition = manager.partitions[TopicPartition("p", 0)]
    producers = {1000 + i: ModelProducer(0, INT32_MAX - 20 if i == 0 else 0) for i in range(PRODUCERS)}  # one wraps
    appended: list[Appended] = []
    tag = 0
    for _ in range(STEPS):
        tag += 1
        pid = rng.choice(sorted(producers))
        producer = producers[pid]
        roll = rng.random()
        if roll < 0.1:
            partition.append(plain_batch(tag))
            continue
        if roll < 0.2 and producer.batches:  # a retry of a cached batch: same offsets, nothing appended
            first, last, first_offset, _, records = rng.choice(list(producer.batches))
            end = partition.log_end_offset
            answer = partition.append(records)
            assert answer.duplicate and answer.first_offset == first_offset and partition.log_end_offset == end
            continue
        if roll < 0.25 and producer.batches:  # a gap
            with pytest.raises(OutOfOrderSequenceError):
                partition.append(producer_batch(pid, producer.epoch, producer.next_sequence + 1, 1, tag))
            continue
        if roll < 0.3:  # a client-side epoch bump
            producer.epoch += 1
            producer.next_sequence = 0
            producer.batches.clear()
        count = rng.randint(1, 6)
        records = producer_batch(pid, producer.epoch, producer.next_sequence, count, tag)
        answer = partition.append(records)
        assert not answer.duplicate
        last_sequence = last_sequence_of(producer.next_sequence, count - 1)
        a = Appended(
            pid,
            producer.epoch,
            producer.next_sequence,
            last_sequence,
            answer.first_offset,
            answer.first_offset + count - 1,
            records,
        )
        appended.append(a)
        producer.batches.append((a.first_sequence, a.last_sequence, a.first_offset, a.last_offset, records))
        producer.next_sequence = 0 if last_sequence == INT32_MAX else last_sequence + 1
    assert_state_matches(partition, model_of(appended))
    crash(manager)

    log_dir = directory / "p-0"
    corrupt = seed % 2 == 0  # odd seeds load the newest snapshot itself, even ones an older one
    newest = damage_after_crash(log_dir, rng, corrupt)

    manager = open_manager(directory)
    partition = manager.partitions[TopicPartition("p", 0)]
    end = partition.log_end_offset
    assert newest.exists() != corrupt, "a corrupt snapshot is deleted, a good one kept"
    survivors = [a for a in appended if a.last_offset < end]
    model = model_of(survivors)
    assert_state_matches(partition, model)
    for pid, producer in model.items():  # every cached batch, retried, gets its original offset
        for _, _, first_offset, _, records in producer.batches:
            answer = partition.append(records)
            assert answer.duplicate and answer.first_offset == first_offset
        assert partition.log_end_offset == end
        answer = partition.append(producer_batch(pid, producer.epoch, producer.next_sequence, 2))
        assert not answer.duplicate and answer.first_offset == end
        end += 2
    manager.close()
    reopened = open_manager(directory)
    assert snapshot_offsets(directory / "p-0")[-1] == end, "clean shutdown writes a snapshot at the log end"
    assert set(reopened.partitions[TopicPartition("p", 0)].producer_state.producers) == set(model)
    reopened.close()


def test_retention_removes_old_snapshots_but_keeps_the_newest(tmp_path: Path) -> None:
    manager = open_manager(tmp_path / "data", segment_bytes=1000)
    partition = manager.partitions[TopicPartition("p", 0)]
    for n in range(60):
        partition.append(producer_batch(7, 0, n, 1, n))
    manager.executor.shutdown(wait=True)
    directory = tmp_path / "data" / "p-0"
    assert len(snapshot_offsets(directory)) == limits.PRODUCER_SNAPSHOTS_KEPT, "older snapshots are pruned"
    partition.log.delete_records_before(partition.log_end_offset, partition.log_end_offset)
    partition.producer_state.delete_snapshots_below(partition.log_start_offset)
    assert len(snapshot_offsets(directory)) == 1
    manager.close()
