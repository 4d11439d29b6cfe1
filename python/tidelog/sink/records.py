"""What the user's code receives: one record as read, the same from any source."""

from __future__ import annotations

from typing import NamedTuple

# (topic, partition)
TopicPartition = tuple[str, int]

# Kafka's logical positions (ListOffsets' timestamps, librdkafka's OFFSET_BEGINNING/OFFSET_END).
EARLIEST = -2
LATEST = -1


class SinkRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] | list[tuple[str, bytes | None]]
    # Milliseconds since the epoch (CreateTime or LogAppendTime, as the topic has it).
    timestamp: int
