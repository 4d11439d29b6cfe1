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
    keys NAME P FIRST PID TXN SPEC        a batch of keyed records was appended (compact scenario):
                                          SPEC is one key per record, comma-separated, `~` before
                                          the key of a tombstone; PID -1 for a plain batch; TXN 1
                                          for a transactional one, else 0
    clean? NAME P BOUND / clean NAME P FIRST_DIRTY END   a cleaning pass starts (upper bound
                                          BOUND, the last stable offset) / returned (-1 -1: none)

Every record's value is `value_of(name, gen, offset)`, so the checker knows what each offset
must hold, and which incarnation of a topic name it belongs to.
"""

from __future__ import annotations

import ctypes
import os
import random
import sys
import uuid
from pathlib import Path

from tidelog.config import TopicConfig
from tidelog.core.partition import Partition
from tidelog.protocol.record_batch import RecordInput, build_batch
from tidelog.storage import Cleaner
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


# The compact scenario: a compacted topic with small segments, few keys overwritten many times,
# tombstones that a later pass removes (delete.retention.ms=0), transactions committed and
# aborted, and cleaning passes (LogManager.clean) between the acknowledgements.
COMPACT_OVERRIDES = {
    **TOPIC_OVERRIDES,
    "cleanup.policy": "compact",
    "delete.retention.ms": "0",
    "min.compaction.lag.ms": "0",
    "min.cleanable.dirty.ratio": "0.01",
}
COMPACT_KEYS = 6
# Keys only transactions write: an aborted record is then often the newest of its key, which
# the cleaner must not let supersede the committed one before it.
COMPACT_TXN_KEYS = 2
COMPACT_STEPS = 40
COMPACT_CLEAN_EVERY = 5
TOMBSTONE_SHARE = 0.12
CLEANER_DEDUPE_BUFFER_BYTES = 1 << 20


def key_spec(keys: list[tuple[str, bool]]) -> str:
    return ",".join(f"~{key}" if tombstone else key for key, tombstone in keys)


def parse_key_spec(spec: str) -> list[tuple[str, bool]]:
    return [(word.lstrip("~"), word.startswith("~")) for word in spec.split(",")]


def keyed_batch(
    topic: str,
    gen: int,
    first_offset: int,
    keys: list[tuple[str, bool]],
    producer: tuple[int, int, int] | None = None,
    transactional: bool = False,
) -> bytes:
    """Records with keys; a tombstone's value is null, any other's `value_of` its offset."""
    base = now_ms()
    records: list[RecordInput] = [
        (base + i, key.encode(), None if tombstone else value_of(topic, gen, first_offset + i), [])
        for i, (key, tombstone) in enumerate(keys)
    ]
    if producer is None:
        return build_batch(records)
    producer_id, epoch, sequence = producer
    return build_batch(
        records, producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence, transactional=transactional
    )


class Compaction:
    """The compact scenario's driver of one partition."""

    def __init__(self, driver: Driver, name: str) -> None:
        self.driver = driver
        self.name = name
        self.topic_partition = TopicPartition(name, 0)
        self.unified = driver.manager.partitions[self.topic_partition]
        # The core's view of the partition, for its last stable offset (the cleaner's bound).
        self.partition = Partition(self.topic_partition, uuid.uuid4(), self.unified, durable_acks=True)
        self.cleaner = Cleaner(CLEANER_DEDUPE_BUFFER_BYTES)

    def keys(self, among: int = COMPACT_KEYS) -> list[tuple[str, bool]]:
        rng = self.driver.rng
        return [(f"key{rng.randrange(among)}", rng.random() < TOMBSTONE_SHARE) for _ in range(rng.randint(1, 3))]

    def append(self, producer_id: int | None) -> None:
        driver, name = self.driver, self.name
        keys = self.keys()
        first = self.unified.log_end_offset
        if producer_id is None:
            self.unified.append(keyed_batch(name, driver.gens[name], first, keys))
            driver.mark("keys", name, 0, first, -1, 0, key_spec(keys))
            return
        sequence = driver.sequences.get(producer_id, 0)
        batch = keyed_batch(name, driver.gens[name], first, keys, (producer_id, PRODUCER_EPOCH, sequence))
        appended = self.unified.append(batch)
        assert not appended.duplicate and appended.first_offset == first
        driver.sequences[producer_id] = sequence + len(keys)
        driver.mark("keys", name, 0, first, producer_id, 0, key_spec(keys))
        driver.mark("batch", name, 0, producer_id, PRODUCER_EPOCH, sequence, len(keys), first, appended.last_offset)

    def txn_append(self, producer: TxnProducer) -> None:
        driver, name = self.driver, self.name
        keys = self.keys(COMPACT_KEYS + COMPACT_TXN_KEYS)
        first = self.unified.log_end_offset
        sequence = producer.sequences.get(0, 0)
        pid, epoch = producer.producer_id, producer.epoch
        batch = keyed_batch(name, driver.gens[name], first, keys, (pid, epoch, sequence), transactional=True)
        appended = self.unified.append(batch)
        assert not appended.duplicate and appended.first_offset == first
        producer.sequences[0] = sequence + len(keys)
        producer.partitions.add(0)
        driver.mark("keys", name, 0, first, pid, 1, key_spec(keys))
        driver.mark("tbatch", name, 0, pid, epoch, sequence, len(keys), first, appended.last_offset)

    def clean(self) -> None:
        """One pass, as the broker's cleaner task runs it (bound: the last stable offset)."""
        assert self.unified.durable_offset == self.unified.log_end_offset  # everything acknowledged
        bound = self.partition.last_stable_offset
        self.driver.mark("clean?", self.name, 0, bound)
        report = self.driver.manager.clean(self.cleaner, self.topic_partition, bound, self.unified.active_producers())
        if report is None:
            self.driver.mark("clean", self.name, 0, -1, -1)
        else:
            self.driver.mark("clean", self.name, 0, report.first_dirty_offset, report.end_offset)


def compaction(driver: Driver) -> None:
    """Plain, idempotent and transactional keyed batches (a TV1 and a TV2 producer whose
    transactions stay open across passes now and then), an acknowledgement after each step, a
    cleaning pass every few steps (tombstones get their delete horizon on one pass and go on a
    later one), checkpoints; every transaction ended and two last passes before the close."""
    name = "k"
    driver.create(name, 1, COMPACT_OVERRIDES)
    log = Compaction(driver, name)
    producers = [TxnProducer(4000, tv2=False), TxnProducer(4001, tv2=True)]
    rng = driver.rng
    for step in range(COMPACT_STEPS):
        for _ in range(rng.randint(1, 3)):
            share = rng.random()
            if share < 0.25:
                log.txn_append(rng.choice(producers))
            elif share < 0.5:
                log.append(1100)
            else:
                log.append(None)
        for producer in producers:
            if producer.partitions and rng.random() < 0.3:
                end_txn(driver, name, producer, commit=rng.random() < 0.6, extra=set())
        driver.ack(name, 0)
        if step % COMPACT_CLEAN_EVERY == COMPACT_CLEAN_EVERY - 1:
            log.clean()
        if step % 12 == 11:
            driver.manager.checkpoint_all()
            driver.mark("checkpoint")
    for producer in producers:
        if producer.partitions:
            end_txn(driver, name, producer, commit=True, extra=set())
    for _ in range(2):  # the second pass removes the tombstones the first one gave a horizon
        log.append(None)
        log.unified.log.roll()
        driver.ack(name, 0)
        log.clean()
    driver.close()


SCENARIOS = {"roll": roll_and_retention, "topics": topics, "txn": transactions, "compact": compaction}


def main() -> None:
    scenario, data_dir, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    SCENARIOS[scenario](Driver(data_dir, seed))


if __name__ == "__main__":
    main()
