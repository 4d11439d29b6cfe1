"""Workloads run under the fsrecord interposer: the real LogManager / UnifiedLog / PartitionLog,
driven synchronously, with a marker in the op log after every acknowledgement.

Run as `python -m tests.crash.workload SCENARIO DATA_DIR SEED` with LD_PRELOAD set to fsrecord.so
(see tests/crash/explorer.py, which starts it). Markers (`fsrec_mark`):

    topic+ NAME GEN TOPIC_ID PARTITIONS   create_topic returned (topics.json durable)
    topic-? NAME / topic- NAME            delete_topic starts / returned
    ack NAME P D                          flush() returned D: every offset below D is durable
    batch NAME P PID EPOCH SEQ COUNT FIRST LAST   an idempotent batch was appended
    ret? NAME P / ret NAME P LSO          retention starts / returned with log start LSO

Every record's value is `value_of(name, gen, offset)`, so the checker knows what each offset
must hold, and which incarnation of a topic name it belongs to.
"""

from __future__ import annotations

import ctypes
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


def value_of(topic: str, gen: int, offset: int) -> bytes:
    return f"{topic}#{gen}:{offset}".encode().ljust(40, b".")


def batch_for(
    topic: str, gen: int, first_offset: int, count: int, producer: tuple[int, int, int] | None = None
) -> bytes:
    base = now_ms()
    records = [(base + i, None, value_of(topic, gen, first_offset + i), []) for i in range(count)]
    if producer is None:
        return build_batch(records)
    producer_id, epoch, sequence = producer
    return build_batch(records, producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence)


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


SCENARIOS = {"roll": roll_and_retention, "topics": topics}


def main() -> None:
    scenario, data_dir, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    SCENARIOS[scenario](Driver(data_dir, seed))


if __name__ == "__main__":
    main()
