"""Pre-zeroed segments (`tidelog.log.preallocate.bytes`) in a running broker: the active
segment's file is zeroed ahead of the log, a SIGKILL loses nothing acknowledged and recovery
takes the zeros as the log's end, and rolled or cleanly closed segments hold exactly their
batches (Kafka's format, for every reader)."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import Consumer, Producer

from tests.server.conftest import BrokerProcess, free_port, wait_until

STEP = 1 << 20
RECORDS = 6000
SETTINGS = {"tidelog.log.preallocate.bytes": str(STEP), "log.segment.bytes": str(2 * STEP)}


# A batch may end in a few zero bytes of its own (a record without headers ends in a 0 count).
OWN_ZEROS_MAX = 16


def trailing_zeros(path: Path) -> int:
    data = path.read_bytes()
    return len(data) - len(data.rstrip(b"\0"))


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "zeroed-0").glob("*.log"))


def consume_all(bootstrap: str) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "auto.offset.reset": "earliest"})
    consumer.subscribe(["zeroed"])
    values: list[bytes] = []
    try:
        while len(values) < RECORDS:
            message = consumer.poll(10)
            assert message is not None, f"only {len(values)} of {RECORDS} records came back"
            assert message.error() is None, message.error()
            values.append(message.value())
    finally:
        consumer.close()
    return values


def test_a_sigkill_keeps_every_acknowledged_record_and_closed_segments_are_kafkas_format(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    broker = BrokerProcess(data_dir, free_port(), SETTINGS).start()
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2})
    acknowledged: list[bytes] = []

    def delivered(error: object, message: object) -> None:
        if error is None:
            acknowledged.append(message.value())  # type: ignore[attr-defined]

    for i in range(RECORDS):
        producer.produce("zeroed", f"{i:06d}".encode() * 170, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert len(acknowledged) == RECORDS
    files = segments(data_dir)
    assert len(files) >= 3, "6 MiB of records in 2 MiB segments"
    wait_until(lambda: trailing_zeros(segments(data_dir)[-1]) > STEP // 4, timeout_s=10)
    assert all(trailing_zeros(path) <= OWN_ZEROS_MAX for path in files[:-1]), "rolled segments are cut back"
    broker.kill()

    broker.start()
    try:
        assert "truncated 0 byte(s)" in broker.log_text(), "the zeros are not reported as a torn tail"
        assert consume_all(broker.bootstrap) == acknowledged
    finally:
        assert broker.stop() == 0
    assert all(trailing_zeros(path) <= OWN_ZEROS_MAX for path in segments(data_dir)), "a clean stop cuts the zeros"
