"""Reading a topic back with a real client (confluent-kafka): every record a consumer at one
isolation level gets, from offset 0 until each partition reports its end. The one helper the
transaction and fault tests use to see what a topic holds at read_committed and read_uncommitted."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, TopicPartition

READ_TIMEOUT_S = 60.0


@dataclass
class ReadBack:
    """What one read to the end gave: (offset, value) per partition in log order, and the
    position at which each partition reported its end (for read_committed: its last stable offset
    at that moment)."""

    records: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)

    def values(self) -> list[bytes]:
        """Every value, partition by partition, in log order."""
        return [value for p in sorted(self.records) for _, value in self.records[p]]

    def counts(self) -> Counter[bytes]:
        return Counter(self.values())


def read_to_end(
    bootstrap: str,
    topic: str,
    partitions: int,
    isolation: str,
    timeout_s: float = READ_TIMEOUT_S,
    strict: bool = True,
) -> ReadBack:
    """Read `topic` from offset 0 at `isolation` until every partition reported its end. With
    `strict` a partition that does not get there within `timeout_s` fails the test; without, what
    was read so far is returned (for diagnostics of a test that already failed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-back-{isolation}-{time.monotonic_ns()}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    read = ReadBack(records={p: [] for p in range(partitions)})
    deadline = time.monotonic() + timeout_s
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        while len(read.ends) < partitions:
            if time.monotonic() >= deadline:
                assert not strict, f"{topic} not read to its end at {isolation} in {timeout_s}s: ends {read.ends}"
                break
            for message in consumer.consume(1000, 0.5):
                error = message.error()
                if error is None:
                    read.records[message.partition()].append((message.offset(), message.value()))
                elif error.code() == KafkaError._PARTITION_EOF:
                    read.ends[message.partition()] = message.offset()
                else:
                    raise AssertionError(f"reading {topic} at {isolation}: {error}")
    finally:
        consumer.close()
    return read
