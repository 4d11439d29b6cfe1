"""Workloads run under the fsrecord interposer: the real LogManager / UnifiedLog / PartitionLog,
driven synchronously, with a marker in the op log after every acknowledgement.

Run as `python -m tests.crash.workload SCENARIO DATA_DIR SEED` with LD_PRELOAD set to fsrecord.so
(see tests/crash/explorer.py, which starts it). Markers (`fsrec_mark`):

    topic+ NAME GEN TOPIC_ID PARTITIONS   create_topic returned (topics.json durable)
    topic-? NAME / topic- NAME            delete_topic starts / returned
    ack NAME P D                          flush() returned D: every offset below D is durable
    batch NAME P PID EPOCH SEQ COUNT FIRST LAST   an idempotent batch was appended
    ret? NAME P / ret NAME P LSO          retention starts / returned with log start LSO
    tbatch NAME P PID EPOCH SEQ COUNT FIRST LAST  a transactional batch was appended
    marker? NAME P PID EPOCH KIND         a COMMIT/ABORT marker is about to be appended
    marker NAME P PID EPOCH KIND OFFSET   UnifiedLog.append_marker returned (page cache)

Every record's value is `value_of(name, gen, offset)`, so the checker knows what each offset
must hold, and which incarnation of a topic name it belongs to.
"""

from __future__ import annotations

import ctypes
import os
import random
import sys
from pathlib import Path

from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import build_batch
from tidelog.storage.log_manager import LogManager
from tidelog.storage.unified_log import TopicPartition, now_ms

# Small segments and index intervals, so a short workload rolls, writes index entries, takes
# producer snapshots and runs retention many times.
TOPIC_OVERRIDES = {
    "internal.segment.bytes": "1400",
    "index.interval.bytes": "150",
    "retention.ms": "-1",
}
RETENTION_OVERRIDES = {**TOPIC_OVERRIDES, "retention.bytes": "3000"}
PRODUCER_EPOCH = 0
# An idempotent producer's retry is deduplicated only within its last 5 batches: acknowledge
# before that many pile up, so a retry of the last acknowledged batch is always checkable.
BATCHES_PER_ACK_MAX = 3
# The coordinator epoch of every marker (tidelog.coordinator.transaction: one broker).
TXN_COORDINATOR_EPOCH = 0
TXN_STEPS = 60
# Sabotage of the txn scenario (tests/crash/test_crash_states.py), from TIDELOG_CRASH_SABOTAGE:
# "marker_unflushed" acknowledges markers without their flush; "no_txnindex" drops the
# `.txnindex` append of UnifiedLog.append_marker (the log's method is shadowed by a no-op).
SABOTAGE = os.environ.get("TIDELOG_CRASH_SABOTAGE", "")


class WithoutTxnIndex:
    """A PartitionLog whose append_aborted_txn does nothing (sabotage only)."""

    def __init__(self, log: object) -> None:
        self._log = log

    def __getattr__(self, name: str) -> object:
        return getattr(self._log, name)

    def append_aborted_txn(self, *_: object) -> None:
        return None


def value_of(topic: str, gen: int, offset: int) -> bytes:
    return f"{topic}#{gen}:{offset}".encode().ljust(40, b".")


def batch_for(
    topic: str,
    gen: int,
    first_offset: int,
    count: int,
    producer: tuple[int, int, int] | None = None,
    transactional: bool = False,
) -> bytes:
    base = now_ms()
    records = [(base + i, None, value_of(topic, gen, first_offset + i), []) for i in range(count)]
    if producer is None:
        return build_batch(records)
    producer_id, epoch, sequence = producer
    return build_batch(
        records, producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence, transactional=transactional
    )


class Recorder:
    def __init__(self) -> None:
        self._mark = ctypes.CDLL(None).fsrec_mark
        self._mark.argtypes = [ctypes.c_char_p]

    def __call__(self, *words: object) -> None:
        self._mark(" ".join(map(str, words)).encode())


class Driver:
    def __init__(self, data_dir: Path, seed: int) -> None:
        self.mark = Recorder()
        self.rng = random.Random(seed)
        self.manager = LogManager.open(data_dir, TopicConfig())
        self.gens: dict[str, int] = {}
        self.sequences: dict[int, int] = {}

    def create(self, name: str, partitions: int, overrides: dict[str, str]) -> None:
        meta = self.manager.create_topic(name, partitions, overrides)
        self.gens[name] = self.gens.get(name, 0) + 1
        self.mark("topic+", name, self.gens[name], meta.topic_id, partitions)

    def delete(self, name: str) -> None:
        self.mark("topic-?", name)
        self.manager.delete_topic(name)
        self.mark("topic-", name)

    def append(self, name: str, partition: int, producer_id: int | None) -> None:
        log = self.manager.partitions[TopicPartition(name, partition)]
        count = self.rng.randint(1, 4)
        first = log.log_end_offset
        if producer_id is None:
            log.append(batch_for(name, self.gens[name], first, count))
            return
        sequence = self.sequences.get(producer_id, 0)
        batch = batch_for(name, self.gens[name], first, count, (producer_id, PRODUCER_EPOCH, sequence))
        appended = log.append(batch)
        assert not appended.duplicate and appended.first_offset == first
        self.sequences[producer_id] = sequence + count
        self.mark("batch", name, partition, producer_id, PRODUCER_EPOCH, sequence, count, first, appended.last_offset)

    def ack(self, name: str, partition: int) -> None:
        durable = self.manager.partitions[TopicPartition(name, partition)].log.flush()
        self.mark("ack", name, partition, durable)

    def step(self, name: str, partition: int, producers: list[int]) -> None:
        """A few appends (plain and idempotent), then a group commit's flush and its ack."""
        for _ in range(self.rng.randint(1, BATCHES_PER_ACK_MAX)):
            producer = self.rng.choice([None, *producers])
            self.append(name, partition, producer)
        self.ack(name, partition)

    def retention(self, name: str, partition: int) -> None:
        topic_partition = TopicPartition(name, partition)
        durable = self.manager.partitions[topic_partition].durable_offset
        self.mark("ret?", name, partition)
        self.manager.enforce_retention(lambda tp: durable if tp == topic_partition else 0)
        self.mark("ret", name, partition, self.manager.partitions[topic_partition].log_start_offset)

    def close(self) -> None:
        self.manager.close()
        self.mark("closed")


def roll_and_retention(driver: Driver) -> None:
    """One partition: rolls, index entries, producer snapshots, checkpoints, retention deletes."""
    driver.create("r", 1, RETENTION_OVERRIDES)
    for step in range(36):
        driver.step("r", 0, [1000, 1001])
        if step % 5 == 4:
            driver.manager.checkpoint_all()
            driver.mark("checkpoint")
        if step % 6 == 5:
            driver.retention("r", 0)
    driver.close()


def topics(driver: Driver) -> None:
    """Topic create/delete (topics.json renames), recreation of a deleted name, two partitions."""
    driver.create("a", 2, TOPIC_OVERRIDES)
    driver.create("b", 1, TOPIC_OVERRIDES)
    for _ in range(4):
        driver.step("a", 0, [2000])
        driver.step("a", 1, [])
        driver.step("b", 0, [2001])
    driver.delete("a")
    driver.create("c", 1, TOPIC_OVERRIDES)
    for _ in range(3):
        driver.step("c", 0, [2002])
        driver.step("b", 0, [2001])
    driver.create("a", 1, TOPIC_OVERRIDES)
    for _ in range(3):
        driver.step("a", 0, [])
    driver.delete("b")
    driver.step("c", 0, [2002])
    driver.close()


class TxnProducer:
    """A transactional producer as the client and the transaction coordinator drive it: TV1
    keeps its epoch across transactions; TV2 (KIP-890) ends each one with an epoch bump that
    its markers carry, and the next transaction starts at sequence 0 under the new epoch."""

    def __init__(self, producer_id: int, tv2: bool) -> None:
        self.producer_id = producer_id
        self.tv2 = tv2
        self.epoch = PRODUCER_EPOCH
        self.sequences: dict[int, int] = {}  # per partition, as Kafka's
        self.partitions: set[int] = set()  # in the open transaction (AddPartitionsToTxn)


def txn_append(driver: Driver, name: str, producer: TxnProducer, partition: int) -> None:
    """A Produce of one transactional batch (UnifiedLog.append, the client's path)."""
    log = driver.manager.partitions[TopicPartition(name, partition)]
    count = driver.rng.randint(1, 3)
    first = log.log_end_offset
    sequence = producer.sequences.get(partition, 0)
    pid, epoch = producer.producer_id, producer.epoch
    batch = batch_for(name, driver.gens[name], first, count, (pid, epoch, sequence), transactional=True)
    appended = log.append(batch)
    assert not appended.duplicate and appended.first_offset == first
    producer.sequences[partition] = sequence + count
    producer.partitions.add(partition)
    driver.mark("tbatch", name, partition, pid, epoch, sequence, count, first, appended.last_offset)


def end_txn(driver: Driver, name: str, producer: TxnProducer, commit: bool, extra: set[int]) -> None:
    """EndTxn, then the coordinator's WriteTxnMarkers (Broker.write_txn_markers): a marker into
    each partition of the transaction (UnifiedLog.append_marker via Partition.append_marker:
    marker, producer state, `.txnindex` entry of an abort), then each partition's group commit,
    after which the marker is answered (acknowledged). `extra` are partitions added to the
    transaction that got no data (an empty transaction there: a marker, no index entry)."""
    epoch = producer.epoch + 1 if producer.tv2 else producer.epoch
    kind = "COMMIT" if commit else "ABORT"
    partitions = sorted(producer.partitions | extra)
    for partition in partitions:
        log = driver.manager.partitions[TopicPartition(name, partition)]
        driver.mark("marker?", name, partition, producer.producer_id, epoch, kind)
        appended = log.append_marker(producer.producer_id, epoch, TXN_COORDINATOR_EPOCH, not commit)
        driver.mark("marker", name, partition, producer.producer_id, epoch, kind, appended.first_offset)
    for partition in partitions:
        if SABOTAGE == "marker_unflushed":
            log = driver.manager.partitions[TopicPartition(name, partition)]
            driver.mark("ack", name, partition, log.log_end_offset)
        else:
            driver.ack(name, partition)
    if producer.tv2:
        producer.epoch = epoch
        producer.sequences.clear()
    producer.partitions.clear()


def transactions(driver: Driver) -> None:
    """Transactional producers (two TV1, two TV2) over two partitions with small segments, so
    transactions overlap, span rolls and end with markers in later segments; plain batches in
    between; flushes (acks), checkpoints; two transactions left open at the clean close."""
    name = "t"
    driver.create(name, 2, TOPIC_OVERRIDES)
    if SABOTAGE == "no_txnindex":
        for partition in range(2):
            unified = driver.manager.partitions[TopicPartition(name, partition)]
            unified.log = WithoutTxnIndex(unified.log)  # type: ignore[assignment]
    producers = [TxnProducer(3000 + i, tv2=i >= 2) for i in range(4)]
    rng = driver.rng
    for step in range(TXN_STEPS):
        producer = rng.choice(producers)
        if producer.partitions and rng.random() < 0.35:
            extra = {rng.randrange(2)} if rng.random() < 0.1 else set()
            end_txn(driver, name, producer, commit=rng.random() < 0.5, extra=extra)
        else:
            for _ in range(rng.randint(1, 2)):
                txn_append(driver, name, producer, rng.randrange(2))
            if rng.random() < 0.3:
                driver.append(name, rng.randrange(2), None)
            if rng.random() < 0.6:
                driver.ack(name, rng.randrange(2))
        if step % 12 == 11:
            driver.manager.checkpoint_all()
            driver.mark("checkpoint")
    for producer in producers[2:]:
        if producer.partitions:
            end_txn(driver, name, producer, commit=True, extra=set())
    for producer in producers[:2]:  # left open at the close
        if not producer.partitions:
            txn_append(driver, name, producer, 0)
    driver.ack(name, 0)
    driver.ack(name, 1)
    driver.close()


SCENARIOS = {"roll": roll_and_retention, "topics": topics, "txn": transactions}


def main() -> None:
    scenario, data_dir, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    SCENARIOS[scenario](Driver(data_dir, seed))


if __name__ == "__main__":
    main()
