"""Kafka's VerifiableProducer and VerifiableConsumer (kafka-tools) against tidelog: every
message the producer reports as acknowledged is read back at its offset with its value, and the
consumer, in a group, consumes every offset once and commits the end of each partition.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.compat.conftest import KAFKA_LIBS, kafka_available
from tests.server.conftest import BrokerProcess, free_port

MESSAGES = 2000
TIMEOUT_S = 90

pytestmark = pytest.mark.skipif(not kafka_available(), reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)")


def test_every_acknowledged_message_is_read_back(broker: BrokerProcess, tmp_path: Path) -> None:
    config = tmp_path / "producer.properties"
    # VerifiableProducer sets retries=0, which quietly turns idempotence off unless it is asked for.
    config.write_text("linger.ms=5\nenable.idempotence=true\nretries=2147483647\n")
    command = [
        "java",
        "-cp",
        f"{KAFKA_LIBS}/*",
        "org.apache.kafka.tools.VerifiableProducer",
        "--bootstrap-server",
        broker.bootstrap,
        "--topic",
        "verifiable",
        "--max-messages",
        str(MESSAGES),
        "--acks",
        "-1",
        "--producer.config",
        str(config),
    ]
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


def run_tool(tool: str, *arguments: str) -> list[dict[str, object]]:
    command = ["java", "-cp", f"{KAFKA_LIBS}/*", f"org.apache.kafka.tools.{tool}", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_verifiable_consumer_in_a_group_consumes_and_commits_everything(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", free_port(), {"group.initial.rebalance.delay.ms": "0"}).start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic("verified", 3)])["verified"].result()
        config = tmp_path / "producer.properties"
        config.write_text("enable.idempotence=false\n")
        produced = run_tool(
            "VerifiableProducer",
            "--bootstrap-server",
            broker.bootstrap,
            "--topic",
            "verified",
            "--max-messages",
            str(MESSAGES),
            "--acks",
            "-1",
            "--producer.config",
            str(config),
        )
        ends: dict[int, int] = {}
        for event in produced:
            if event["name"] == "producer_send_success":
                partition, offset = int(event["partition"]), int(event["offset"])  # type: ignore[call-overload]
                ends[partition] = max(ends.get(partition, 0), offset + 1)
        assert sum(ends.values()) == MESSAGES
        events = run_tool(
            "VerifiableConsumer",
            "--bootstrap-server",
            broker.bootstrap,
            "--topic",
            "verified",
            "--group-id",
            "verifiers",
            "--max-messages",
            str(MESSAGES),
            "--reset-policy",
            "earliest",
            "--group-protocol",
            "classic",
        )
        names = [e["name"] for e in events]
        assert "partitions_assigned" in names and "shutdown_complete" in names, names[-6:]
        consumed: dict[int, list[tuple[int, int]]] = {}
        for event in events:
            if event["name"] == "records_consumed":
                for part in event["partitions"]:  # type: ignore[attr-defined]
                    consumed.setdefault(part["partition"], []).append((part["minOffset"], part["maxOffset"]))
        for partition, end in ends.items():
            ranges = sorted(consumed[partition])
            assert ranges[0][0] == 0 and ranges[-1][1] == end - 1
            assert all(later[0] == earlier[1] + 1 for earlier, later in zip(ranges, ranges[1:], strict=False)), (
                ranges
            )  # no gap, no repeat
        commits = [e for e in events if e["name"] == "offsets_committed"]
        assert commits and all(e["success"] for e in commits)
        last = {o["partition"]: o["offset"] for e in commits for o in e["offsets"]}  # type: ignore[attr-defined]
        assert last == ends
        reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "verifiers"})
        committed = reader.committed([TopicPartition("verified", p) for p in ends], timeout=10)
        reader.close()
        assert {tp.partition: tp.offset for tp in committed} == ends
    finally:
        broker.stop()
