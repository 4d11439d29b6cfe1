"""A bit flipped on disk while the broker was down is never served to a real consumer: it gets
every record before the damaged batch, then KAFKA_STORAGE_ERROR where it is (retried by the
client); other partitions keep serving and the broker logs the damage once."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tests.conftest import segment_batches
from tests.server.conftest import BrokerProcess, free_port, wait_until

RECORDS = 2_000
BATCH_RECORDS = 20  # one flush per this many records: one batch each
SEGMENT_BYTES = 32 * 1024
DAMAGED_BATCH = 5
CONSUME_S = 8.0


def produce(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 100, "acks": "all"})
    for i in range(RECORDS):
        producer.produce(topic, f"{topic}-{i:05d}".encode() + b"x" * 100, partition=0)
        if i % BATCH_RECORDS == BATCH_RECORDS - 1:
            producer.flush(10)
    assert producer.flush(10) == 0


def consume(bootstrap: str, topic: str, seconds: float) -> tuple[list[str], list[int]]:
    """Values read from the start for `seconds`, and the error codes the client reported."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "enable.auto.commit": False, "fetch.wait.max.ms": 50}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[str] = []
    errors: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            errors.append(error.code())
            continue
        values.append((message.value() or b"")[: len(topic) + 6].decode())
    consumer.close()
    return values, errors


def flip_a_bit_in_batch(directory: Path, number: int) -> tuple[int, int]:
    """Flips a bit inside the records of the `number`th batch of the first segment; returns the
    batch's offsets."""
    segment = sorted(directory.glob("*.log"))[0]
    batches = segment_batches(segment)
    assert number + 1 < len(batches), "a batch follows the damaged one in its segment"
    position, size, first, last = batches[number]
    data = bytearray(segment.read_bytes())
    data[position + size - 12] ^= 0x10  # a byte of its last record
    segment.write_bytes(bytes(data))
    return first, last


def test_a_damaged_batch_is_refused_and_the_rest_is_served(tmp_path: Path) -> None:
    settings = {"tidelog.internal.log.segment.bytes": str(SEGMENT_BYTES), "num.partitions": "1"}
    broker = BrokerProcess(tmp_path / "data", free_port(), settings).start()
    try:
        produce(broker.bootstrap, "damaged")
        produce(broker.bootstrap, "other")
    finally:
        assert broker.stop() == 0  # a clean shutdown: every segment is trusted at the next start
    first, last = flip_a_bit_in_batch(tmp_path / "data" / "damaged-0", DAMAGED_BATCH)
    broker = BrokerProcess(tmp_path / "data", free_port(), settings).start()
    try:
        values, errors = consume(broker.bootstrap, "damaged", CONSUME_S)
        other, other_errors = consume(broker.bootstrap, "other", CONSUME_S / 2)
    finally:
        broker.stop()
    assert values == [f"damaged-{i:05d}" for i in range(first)], "exactly the records before the damage"
    assert all(code == KafkaError.KAFKA_STORAGE_ERROR for code in errors), errors
    assert other == [f"other-{i:05d}" for i in range(RECORDS)] and not other_errors
    reports = [line for line in broker.lines if "corrupt batch in" in line]
    assert len(reports) == 1, reports
    assert f"offsets {first}..{last}" in reports[0] and "damaged-0" in reports[0]


def test_the_broker_scrub_finds_damage_no_read_reached(tmp_path: Path) -> None:
    settings = {"tidelog.internal.log.segment.bytes": str(SEGMENT_BYTES), "num.partitions": "1"}
    broker = BrokerProcess(tmp_path / "data", free_port(), settings).start()
    try:
        produce(broker.bootstrap, "damaged")
    finally:
        assert broker.stop() == 0
    first, last = flip_a_bit_in_batch(tmp_path / "data" / "damaged-0", DAMAGED_BATCH)
    scrubbing = {**settings, "tidelog.log.scrub.interval.ms": "100", "tidelog.log.scrub.bytes.per.sec": "0"}
    broker = BrokerProcess(tmp_path / "data", free_port(), scrubbing).start()
    try:
        wait_until(lambda: any("scrub verified" in line for line in broker.lines), timeout_s=30)
    finally:
        broker.stop()
    reports = [line for line in broker.lines if "corrupt batch in" in line]
    assert len(reports) == 1 and f"offsets {first}..{last}" in reports[0], reports
    assert any("1 damaged batch(es)" in line for line in broker.lines if "scrub verified" in line)
    # Interval 0: no scrub (only reads verify).
    broker = BrokerProcess(tmp_path / "data", free_port(), {**settings, "tidelog.log.scrub.interval.ms": "0"}).start()
    try:
        time.sleep(1)
    finally:
        broker.stop()
    assert not any("scrub verified" in line for line in broker.lines)
