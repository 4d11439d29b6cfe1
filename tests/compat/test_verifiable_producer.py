"""Kafka's VerifiableProducer (kafka-tools) against tidelog: every message it reports as
acknowledged is read back at its offset with its value.

VerifiableConsumer subscribes with a consumer group, which needs the group coordinator (the
consumer-group issue); the read-back here uses assigned partitions instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.compat.conftest import KAFKA_LIBS, kafka_available
from tests.server.conftest import BrokerProcess

MESSAGES = 2000
TIMEOUT_S = 90

pytestmark = pytest.mark.skipif(not kafka_available(), reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)")


def test_every_acknowledged_message_is_read_back(broker: BrokerProcess, tmp_path: Path) -> None:
    config = tmp_path / "producer.properties"
    # VerifiableProducer sets retries=0, which quietly turns idempotence off unless it is asked for.
    config.write_text("linger.ms=5\nenable.idempotence=true\nretries=2147483647\n")
    command = ["java", "-cp", f"{KAFKA_LIBS}/*", "org.apache.kafka.tools.VerifiableProducer", "--bootstrap-server",
               broker.bootstrap, "--topic", "verifiable", "--max-messages", str(MESSAGES), "--acks", "-1",
               "--producer.config", str(config)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    acked = {(e["partition"], e["offset"]): e["value"] for e in events if e["name"] == "producer_send_success"}
    assert len(acked) == MESSAGES
    assert not [e for e in events if e["name"] == "producer_send_error"]

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    partitions = {partition for partition, _ in acked}
    consumer.assign([TopicPartition("verifiable", p, 0) for p in partitions])
    stored: dict[tuple[int, int], str] = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(stored) < len(acked) and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
            assert message.error() is None
            stored[(message.partition(), message.offset())] = message.value().decode()
    consumer.close()
    assert stored == acked
