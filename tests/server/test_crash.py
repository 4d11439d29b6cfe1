"""SIGKILL the broker during acks=all production: after a restart, every acknowledged record is
there, at the offset it was acknowledged with."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.server.conftest import BrokerProcess

KILLS = 3
RECORDS_PER_TICK = 200
TICK_S = 0.01
RUN_BETWEEN_KILLS_S = 1.5
TIMEOUT_S = 30


def test_acknowledged_records_survive_sigkill(broker: BrokerProcess) -> None:
    acked: dict[int, bytes] = {}
    stop = threading.Event()

    def on_delivery(error: object, message: object) -> None:
        if error is None:
            acked[message.offset()] = message.value()  # type: ignore[attr-defined]

    def produce() -> None:
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2,
                             "message.timeout.ms": 60_000, "reconnect.backoff.max.ms": 100})  # fmt: skip
        sequence = 0
        while not stop.is_set():
            for _ in range(RECORDS_PER_TICK):
                producer.produce("crash", value=b"value-%d" % sequence, partition=0, on_delivery=on_delivery)
                sequence += 1
            producer.poll(TICK_S)
        producer.flush(TIMEOUT_S)

    writer = threading.Thread(target=produce)
    writer.start()
    try:
        for _ in range(KILLS):
            time.sleep(RUN_BETWEEN_KILLS_S)
            broker.kill()
            broker.lines.clear()
            broker.start()
    finally:
        time.sleep(RUN_BETWEEN_KILLS_S)
        stop.set()
        writer.join(TIMEOUT_S * 2)
    assert len(acked) > 1000, f"only {len(acked)} records acknowledged"

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition("crash", 0, 0)])
    stored: dict[int, bytes] = {}
    end = max(acked) + 1
    deadline = time.monotonic() + TIMEOUT_S
    while len(stored) < end and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
            assert message.error() is None
            stored[message.offset()] = message.value()
    consumer.close()
    lost = {offset for offset, value in acked.items() if stored.get(offset) != value}
    assert not lost, f"{len(lost)} acknowledged records missing or changed, e.g. {sorted(lost)[:5]}"
