"""Apache Kafka's own Java tools (kafka-clients 4.x) against a real broker: kafka-topics,
console producer with every codec, console consumer, and kafka-get-offsets.

The Java producer is idempotent by default (InitProducerId, then sequenced batches). Group consumers need the group
coordinator (the consumer-group issue), so the console consumer reads an assigned partition.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.server.conftest import BrokerProcess
from tests.server.scenario import CODECS

LIBS = Path(__file__).parents[2] / ".cache" / "kafka" / "libs"
pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or not any(LIBS.glob("kafka-clients-*.jar")),
    reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)",
)
TIMEOUT_S = 90
RECORDS = 50


def java(tool: str, *args: str, stdin: str | None = None) -> str:
    command = ["java", "-cp", f"{LIBS}/*", f"org.apache.kafka.tools.{tool}", *args]
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_kafka_topics_describes_what_it_created(broker: BrokerProcess) -> None:
    server = ["--bootstrap-server", broker.bootstrap]
    java(
        "TopicCommand",
        *server,
        "--create",
        "--topic",
        "java-topics",
        "--partitions",
        "3",
        "--config",
        "retention.ms=60000",
    )
    described = java("TopicCommand", *server, "--describe", "--topic", "java-topics")
    assert "PartitionCount: 3" in described and "retention.ms=60000" in described
    assert described.count("Leader: 1\tReplicas: 1\tIsr: 1") == 3
    java("TopicCommand", *server, "--alter", "--topic", "java-topics", "--partitions", "5")
    assert "PartitionCount: 5" in java("TopicCommand", *server, "--describe", "--topic", "java-topics")
    java("TopicCommand", *server, "--delete", "--topic", "java-topics")
    assert "java-topics" not in java("TopicCommand", *server, "--list").split()


@pytest.mark.parametrize("codec", CODECS)
def test_console_producer_and_consumer(broker: BrokerProcess, codec: str) -> None:
    server = ["--bootstrap-server", broker.bootstrap]
    topic = f"java-{codec}"
    java("TopicCommand", *server, "--create", "--topic", topic, "--partitions", "1")
    lines = "".join(f"key-{i}:{codec}-value-{i}\n" for i in range(RECORDS))
    java(
        "ConsoleProducer",
        *server,
        "--topic",
        topic,
        "--command-property",
        f"compression.type={codec}",
        "--reader-property",
        "parse.key=true",
        "--reader-property",
        "key.separator=:",
        stdin=lines,
    )
    out = java(
        "consumer.ConsoleConsumer",
        *server,
        "--topic",
        topic,
        "--partition",
        "0",
        "--offset",
        "earliest",
        "--max-messages",
        str(RECORDS),
        "--timeout-ms",
        "20000",
        "--formatter-property",
        "print.offset=true",
        "--formatter-property",
        "print.key=true",
    )
    assert out.splitlines() == [f"Offset:{i}\tkey-{i}\t{codec}-value-{i}" for i in range(RECORDS)]
    assert java("GetOffsetShell", *server, "--topic", topic).split() == [f"{topic}:0:{RECORDS}"]


def test_kafka_transactions_describe_producers_shows_the_idempotent_producer(broker: BrokerProcess) -> None:
    server = ["--bootstrap-server", broker.bootstrap]
    java("TopicCommand", *server, "--create", "--topic", "java-idempotent", "--partitions", "1")
    lines = "".join(f"value-{i}\n" for i in range(RECORDS))
    java("ConsoleProducer", *server, "--topic", "java-idempotent", "--command-property", "linger.ms=1000", stdin=lines)
    out = java("TransactionsCommand", *server, "describe-producers", "--topic", "java-idempotent", "--partition", "0")
    header, *rows = [line.split() for line in out.splitlines() if line.strip()]
    assert header[:4] == ["ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch", "LastSequence"], out
    assert len(rows) == 1 and rows[0][1] == "0" and rows[0][3] == str(RECORDS - 1), out
