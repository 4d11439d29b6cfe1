"""Kafka 4.4's admin tools and the APIs under them, on tidelog and on Apache Kafka: kafka-log-dirs
(DescribeLogDirs), kafka-leader-election (ElectLeaders), kafka-delete-records and
kafka-get-offsets, kafka-features, and OffsetForLeaderEpoch (KIP-320) over the wire; the same
answers on both, and on tidelog `kafka-metadata-quorum` gets the error Kafka gives a broker that
is not a KRaft quorum (no DescribeQuorum).
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from kio.schema.errors import ErrorCode
from kio.schema.offset_for_leader_epoch.v4.request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import i32

from tests.compat.conftest import KAFKA_LIBS, CompactingBroker, kafka_available
from tests.compat.test_compaction_differential import SHORT_JVM, TOOL_TIMEOUT_S
from tests.server.wire_client import WireClient

pytestmark = pytest.mark.skipif(not kafka_available(), reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)")

RECORDS = 25
OFFSET_FOR_LEADER_EPOCH = 23


def tool(name: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = ["java", *SHORT_JVM, "-cp", f"{KAFKA_LIBS}/*", f"org.apache.kafka.tools.{name}", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)


def ok(name: str, *arguments: str) -> str:
    result = tool(name, *arguments)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def filled_topic(broker: CompactingBroker, partitions: int = 2) -> str:
    """A new topic with RECORDS records in partition 0, none in the others."""
    topic = f"admin-{uuid.uuid4().hex[:8]}"
    ok(
        "TopicCommand",
        "--bootstrap-server",
        broker.bootstrap,
        "--create",
        "--topic",
        topic,
        "--partitions",
        str(partitions),
    )
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(RECORDS):
        producer.produce(topic, value=f"value-{i}".encode(), partition=0)
    assert producer.flush(30) == 0
    return topic


def test_kafka_log_dirs_reports_each_partitions_size(compacting: CompactingBroker) -> None:
    topic = filled_topic(compacting)
    out = ok("LogDirsCommand", "--bootstrap-server", compacting.bootstrap, "--describe", "--topic-list", topic)
    answer = json.loads(out.splitlines()[-1])
    [broker] = answer["brokers"]
    [log_dir] = broker["logDirs"]
    assert log_dir["error"] is None and Path(log_dir["logDir"]).is_absolute()
    assert Path(log_dir["logDir"]).resolve() == compacting.logs.resolve()
    sizes = {p["partition"]: (p["size"], p["offsetLag"], p["isFuture"]) for p in log_dir["partitions"]}
    on_disk = {
        f"{topic}-{i}": sum(f.stat().st_size for f in compacting.partition_dir(topic, i).glob("*.log")) for i in (0, 1)
    }
    assert sizes == {name: (size, 0, False) for name, size in on_disk.items()}
    assert on_disk[f"{topic}-0"] > 0 and on_disk[f"{topic}-1"] == 0


def election_output(broker: CompactingBroker, *arguments: str) -> tuple[int, str]:
    result = tool("LeaderElectionCommand", "--bootstrap-server", broker.bootstrap, *arguments)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if not line.startswith(("SLF4J", "\tat "))]
    return result.returncode, "\n".join(lines)


def test_kafka_leader_election_finds_nothing_to_elect_on_one_node(compacting: CompactingBroker) -> None:
    topic = filled_topic(compacting)
    preferred = ["--election-type", "preferred"]
    assert election_output(compacting, *preferred, "--all-topic-partitions") == (0, "")
    assert election_output(compacting, *preferred, "--topic", topic, "--partition", "1") == (
        0,
        f"Valid replica already elected for partitions {topic}-1",
    )
    status, out = election_output(compacting, "--election-type", "unclean", "--topic", topic, "--partition", "7")
    assert status != 0 and f"{topic}-7: org.apache.kafka.common.errors.UnknownTopicOrPartitionException: " in out
    assert f"No such partition as {topic}-7" in out
    status, out = election_output(compacting, *preferred, "--topic", "no-such-topic", "--partition", "0")
    assert status != 0 and "No such topic as no-such-topic" in out


def test_kafka_delete_records_then_get_offsets(compacting: CompactingBroker, tmp_path: Path) -> None:
    topic = filled_topic(compacting)
    plan = tmp_path / "delete.json"
    plan.write_text(json.dumps({"partitions": [{"topic": topic, "partition": 0, "offset": 10}], "version": 1}))
    out = ok("DeleteRecordsCommand", "--bootstrap-server", compacting.bootstrap, "--offset-json-file", str(plan))
    assert f"partition: {topic}-0\tlow_watermark: 10" in out
    server = ["--bootstrap-server", compacting.bootstrap, "--topic", topic]
    assert ok("GetOffsetShell", *server, "--time", "-2").split() == [f"{topic}:0:10", f"{topic}:1:0"]
    assert ok("GetOffsetShell", *server, "--time", "-1").split() == [f"{topic}:0:{RECORDS}", f"{topic}:1:0"]


def test_kafka_features_describes_transaction_version(compacting: CompactingBroker) -> None:
    out = ok("FeatureCommand", "--bootstrap-server", compacting.bootstrap, "describe")
    [line] = [line for line in out.splitlines() if line.startswith("Feature: transaction.version")]
    fields = dict(re.findall(r"(\w+): (\S+)", line))
    assert fields["SupportedMinVersion"] == "0" and fields["SupportedMaxVersion"] == "2"
    assert fields["FinalizedVersionLevel"] == "2"


def epoch_answers(broker: CompactingBroker, topic: str, asks: list[tuple[int, int]]) -> list[tuple[str, int, int]]:
    """OffsetForLeaderEpoch v4 for partition 0, one (current leader epoch, leader epoch) per
    ask, and one for a topic that does not exist: (error, epoch, end offset) each."""
    client = WireClient(broker.port)
    try:
        partitions = tuple(
            OffsetForLeaderPartition(partition=i32(0), current_leader_epoch=i32(current), leader_epoch=i32(epoch))
            for current, epoch in asks
        )
        request = OffsetForLeaderEpochRequest(
            replica_id=BrokerId(-1),  # a consumer
            topics=(
                *(OffsetForLeaderTopic(topic=TopicName(topic), partitions=(p,)) for p in partitions),
                OffsetForLeaderTopic(topic=TopicName("no-such-topic"), partitions=partitions[:1]),
            ),
        )
        response = client.request(OFFSET_FOR_LEADER_EPOCH, 4, request)
    finally:
        client.close()
    return [(ErrorCode(p.error_code).name, p.leader_epoch, p.end_offset) for t in response.topics for p in t.partitions]


def test_offset_for_leader_epoch_answers_as_kafka(compacting: CompactingBroker) -> None:
    topic = filled_topic(compacting)
    asks = [(-1, 0), (0, 0), (-1, 1), (1, 0), (-1, -1)]
    assert epoch_answers(compacting, topic, asks) == [
        ("none", 0, RECORDS),  # the current epoch: it ends at the log end offset
        ("none", 0, RECORDS),  # the same, fenced by the current epoch the client knows
        ("none", -1, -1),  # an epoch above every known one
        ("unknown_leader_epoch", -1, -1),  # the client knows a newer leader than the broker
        ("none", -1, -1),  # no epoch
        ("unknown_topic_or_partition", -1, -1),
    ]


def test_kafka_metadata_quorum_gets_what_a_broker_without_kraft_answers(tidelog_compaction: CompactingBroker) -> None:
    result = tool("MetadataQuorumCommand", "--bootstrap-server", tidelog_compaction.bootstrap, "describe", "--status")
    assert result.returncode != 0
    assert "UnsupportedVersionException: The node does not support DESCRIBE_QUORUM" in result.stdout + result.stderr
