"""SIGKILL the broker during acks=all production: after a restart, every acknowledged record is
there, at the offset it was acknowledged with."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.compat.conftest import KAFKA_LIBS, kafka_available
from tests.server.conftest import BrokerProcess, free_port
from tests.server.idempotent_load import (
    AiokafkaWriter,
    ConfluentWriter,
    JavaWriter,
    KafkaPythonWriter,
    Writer,
    assert_each_acknowledged_record_once,
    check,
    read_all,
)

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
        producer = Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "acks": "all",
                "linger.ms": 2,
                "message.timeout.ms": 60_000,
                "reconnect.backoff.max.ms": 100,
            }
        )
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


IDEMPOTENT_KILLS = 4
IDEMPOTENT_PARTITIONS = 3


def test_idempotent_producers_of_every_client_survive_repeated_sigkill(tmp_path: Path) -> None:
    """SIGKILL under idempotent load from confluent-kafka, kafka-python, aiokafka and Java: after
    each restart retries of batches acknowledged (or appended) before the kill are deduplicated
    from the recovered producer state. Small segments, so snapshots on roll and replays run too;
    a clean restart at the end loads the shutdown snapshot."""
    broker = BrokerProcess(
        tmp_path / "data", free_port(), {"tidelog.internal.log.segment.bytes": str(256 * 1024)}
    ).start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic("kills", IDEMPOTENT_PARTITIONS, 1)])["kills"].result(30)
        args = (broker.bootstrap, "kills", IDEMPOTENT_PARTITIONS)
        writers: list[Writer] = [
            ConfluentWriter("confluent", *args),
            KafkaPythonWriter("kafkapython", *args),
            AiokafkaWriter("aiokafka", *args),
        ]
        if kafka_available():
            writers.append(JavaWriter("java", *args, libs=KAFKA_LIBS, workdir=tmp_path, max_messages=100_000))
        for writer in writers:
            writer.start()
        for _ in range(IDEMPOTENT_KILLS):
            time.sleep(RUN_BETWEEN_KILLS_S)
            broker.kill()
            broker.lines.clear()
            broker.start()
        time.sleep(RUN_BETWEEN_KILLS_S)
        broker.stop()  # one clean restart too: the state then comes from the shutdown snapshot
        broker.lines.clear()
        broker.start()
        time.sleep(RUN_BETWEEN_KILLS_S)
        for writer in writers:
            writer.finish()
        outcome = check(writers, read_all(broker.bootstrap, "kills", IDEMPOTENT_PARTITIONS))
        print(
            f"\nkills: {IDEMPOTENT_KILLS} + 1 clean restart; {outcome.summary()}; "
            + ", ".join(f"{w.name} sent {w.sent} acked {len(w.acked)}" for w in writers)
        )
        assert_each_acknowledged_record_once(writers, outcome)
        assert list((tmp_path / "data" / "kills-0").glob("*.snapshot")), "segments rolled: snapshots were taken"
    finally:
        broker.kill()
