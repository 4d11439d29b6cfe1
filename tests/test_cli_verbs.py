"""`tidelog topics ...` and `tidelog groups ...` against a real broker: what each verb reports
(--format json) is what the cluster holds, checked through an independent client; errors are one
line naming Kafka's error, with exit status 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from tests.server.conftest import BrokerProcess, free_port

TIMEOUT_S = 60
RECORDS = 30


def tidelog(broker: BrokerProcess, verb: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tidelog", verb, "--bootstrap", broker.bootstrap, "--format", "json", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)


def ok(broker: BrokerProcess, verb: str, *arguments: str) -> Any:
    result = tidelog(broker, verb, *arguments)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_topic_verbs(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", free_port()).start()
    try:
        ok(broker, "topics", "create", "orders", "--partitions", "3", "--config", "retention.ms=60000")
        refused = tidelog(broker, "topics", "create", "orders")
        assert refused.returncode == 1
        assert refused.stderr.strip() == "tidelog: TOPIC_ALREADY_EXISTS: Topic 'orders' already exists."
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(RECORDS):
            producer.produce("orders", value=b"v", partition=i % 3)
        assert producer.flush(30) == 0
        assert ok(broker, "topics", "list") == [{"topic": "orders", "partitions": 3, "replicas": 1}]
        [described] = ok(broker, "topics", "describe", "orders")
        assert described["configs"] == {"retention.ms": "60000"}
        assert [(p["partition"], p["leader"], p["earliest"], p["latest"]) for p in described["partitions"]] == [
            (i, 1, 0, RECORDS // 3) for i in range(3)
        ]
        ok(broker, "topics", "alter-config", "orders", "--set", "cleanup.policy=compact", "--delete", "retention.ms")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        resource = ConfigResource("topic", "orders")
        configs = admin.describe_configs([resource])[resource].result(30)
        assert configs["cleanup.policy"].value == "compact" and configs["retention.ms"].is_default
        ok(broker, "topics", "add-partitions", "orders", "--total", "5")
        assert len(admin.list_topics(timeout=30).topics["orders"].partitions) == 5
        ok(broker, "topics", "delete", "orders")
        assert "orders" not in admin.list_topics(timeout=30).topics
        missing = tidelog(broker, "topics", "describe", "orders")
        assert missing.returncode == 1 and missing.stderr.startswith("tidelog: UNKNOWN_TOPIC_OR_PARTITION: ")
    finally:
        broker.stop()


def test_group_verbs(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", free_port(), {"group.initial.rebalance.delay.ms": "0"}).start()
    try:
        ok(broker, "topics", "create", "events", "--partitions", "2")
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(RECORDS):
            producer.produce("events", value=b"v", partition=i % 2)
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "billing", "enable.auto.commit": False})
        consumer.commit(offsets=[TopicPartition("events", 0, 5), TopicPartition("events", 1, 15)], asynchronous=False)
        consumer.close()
        assert ok(broker, "groups", "list") == [{"group": "billing", "state": "EMPTY", "type": "classic"}]
        described = ok(broker, "groups", "describe", "billing")
        assert described["state"] == "EMPTY" and described["members"] == []
        assert [(o["partition"], o["committed"], o["latest"], o["lag"]) for o in described["offsets"]] == [
            (0, 5, 15, 10),
            (1, 15, 15, 0),
        ]
        plan = ok(broker, "groups", "reset-offsets", "billing", "--topic", "events", "--to-earliest")
        assert [row["new offset"] for row in plan] == [0, 0]
        unchanged = ok(broker, "groups", "describe", "billing")["offsets"]
        assert [o["committed"] for o in unchanged] == [5, 15]  # a plan commits nothing
        ok(broker, "groups", "reset-offsets", "billing", "--topic", "events", "--to-offset", "7", "--execute")
        assert [o["committed"] for o in ok(broker, "groups", "describe", "billing")["offsets"]] == [7, 7]
        ok(broker, "groups", "delete", "billing")
        assert ok(broker, "groups", "list") == []
        gone = tidelog(broker, "groups", "delete", "billing")
        assert gone.returncode == 1 and gone.stderr.startswith("tidelog: GROUP_ID_NOT_FOUND: ")
    finally:
        broker.stop()


def test_help_lists_the_verbs() -> None:
    result = subprocess.run([sys.executable, "-m", "tidelog", "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and all(verb in result.stdout for verb in ("topics", "groups", "serve"))
    for verb in ("topics", "groups"):
        result = subprocess.run([sys.executable, "-m", "tidelog", verb, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "--bootstrap" in result.stdout


def run(broker: BrokerProcess, verb: str, *arguments: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tidelog", verb, "--bootstrap", broker.bootstrap, *arguments]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S)


def test_produce_and_consume(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", free_port()).start()
    try:
        ok(broker, "topics", "create", "lines", "--partitions", "2")
        lines = "".join(f"key-{i % 3}:value {i}\n" for i in range(10))
        produced = run(
            broker, "produce", "lines", "-K", ":", "-H", "source=test", "--compression", "zstd", "--idempotent",
            "--format", "json", stdin=lines,
        )  # fmt: skip
        assert produced.returncode == 0, produced.stderr
        assert sum(row["records"] for row in json.loads(produced.stdout)) == 10
        consumed = run(broker, "consume", "lines", "--format", "json")
        assert consumed.returncode == 0, consumed.stderr
        records = [json.loads(line) for line in consumed.stdout.splitlines()]
        assert sorted((r["key"], r["value"]) for r in records) == sorted(
            (f"key-{i % 3}", f"value {i}") for i in range(10)
        )
        assert all(r["headers"] == [{"key": "source", "value": "test"}] for r in records)
        by_key = {}  # the same key always went to the same partition, in order
        for r in sorted(records, key=lambda r: (r["partition"], r["offset"])):
            by_key.setdefault(r["key"], set()).add(r["partition"])
        assert all(len(p) == 1 for p in by_key.values())
        # kcat's -f, a start offset, a single partition, a count.
        one = run(broker, "consume", "lines", "-p", "0", "--from", "offset:1", "-n", "2", "-f", "%p/%o %k=%s\\n")
        expected = [f"0/{r['offset']} {r['key']}={r['value']}" for r in records if r["partition"] == 0][1:3]
        assert one.returncode == 0 and one.stdout.splitlines() == expected
        assert run(broker, "consume", "lines", "--from", "end").stdout == ""
        # One transaction for the whole input: read_committed sees it once committed.
        txn = run(broker, "produce", "lines", "-p", "1", "--transactional-id", "cli-txn", stdin="a\nb\nc\n")
        assert txn.returncode == 0, txn.stderr
        committed = run(broker, "consume", "lines", "-p", "1", "--isolation", "read_committed", "-f", "%s\\n")
        assert committed.stdout.splitlines()[-3:] == ["a", "b", "c"]
        # A refused record aborts the whole transaction: nothing of it is left open or visible.
        ok(broker, "topics", "alter-config", "lines", "--set", "cleanup.policy=compact")
        keyless = run(broker, "produce", "lines", "-p", "1", "--transactional-id", "cli-txn", stdin="x\n")
        assert keyless.returncode == 1 and "\ntidelog: INVALID_RECORD: " in keyless.stderr, keyless.stderr
        assert [t["state"] for t in ok(broker, "transactions", "list")] == ["CompleteAbort"]
        missing = run(broker, "consume", "no-such-topic")
        assert missing.returncode == 1 and missing.stderr.startswith("tidelog: UNKNOWN_TOPIC_OR_PARTITION")
    finally:
        broker.stop()


def test_transaction_verbs(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", free_port()).start()
    try:
        ok(broker, "topics", "create", "payments", "--partitions", "2")
        producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "payer"})
        producer.init_transactions(30)
        producer.begin_transaction()
        for i in range(3):
            producer.produce("payments", value=f"p{i}".encode(), partition=0)
        assert producer.flush(30) == 0  # sent, not committed: the transaction stays open
        [listed] = ok(broker, "transactions", "list")
        assert (listed["transactional id"], listed["state"], listed["coordinator"]) == ("payer", "Ongoing", 1)
        described = ok(broker, "transactions", "describe", "payer")
        assert described["producer id"] == listed["producer id"] and described["partitions"] == ["payments-0"]
        assert described["state"] == "Ongoing" and described["timeout ms"] == 60000
        [active] = ok(broker, "transactions", "describe-producers", "--topic", "payments", "--partition", "0")
        assert active["producer id"] == listed["producer id"] and active["transaction start offset"] == 0
        # Open, but its id holds the partition: not hanging, however old it is allowed to be.
        assert ok(broker, "transactions", "find-hanging", "--max-transaction-timeout", "0") == []
        wrong = tidelog(
            broker, "transactions", "abort", "--topic", "payments", "--partition", "0", "--start-offset", "1"
        )
        assert wrong.returncode == 1 and "no open transaction starts at offset 1" in wrong.stderr
        ok(broker, "transactions", "abort", "--topic", "payments", "--partition", "0", "--start-offset", "0")
        [after] = ok(broker, "transactions", "describe-producers", "--topic", "payments", "--partition", "0")
        assert after["transaction start offset"] == -1
        committed = run(broker, "consume", "payments", "-p", "0", "--isolation", "read_committed", "-f", "%s\\n")
        assert committed.returncode == 0 and committed.stdout == ""  # aborted: nothing to read
        uncommitted = run(broker, "consume", "payments", "-p", "0", "-f", "%s\\n")
        assert uncommitted.stdout.splitlines() == ["p0", "p1", "p2"]
        idle = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "idle"})
        idle.init_transactions(30)  # an id with no transaction yet: Empty, no start time
        described_idle = ok(broker, "transactions", "describe", "idle")
        assert (described_idle["state"], described_idle["partitions"]) == ("Empty", [])
        unknown = tidelog(broker, "transactions", "describe", "nobody")
        assert unknown.returncode == 1 and unknown.stderr.startswith("tidelog: TRANSACTIONAL_ID_NOT_FOUND")
    finally:
        broker.stop()


def test_bench_verbs(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", free_port()).start()
    try:
        ok(broker, "topics", "create", "load", "--partitions", "2")
        chart = tmp_path / "produce.png"
        [produced] = ok(broker, "bench", "produce", "load", "-n", "3000", "-s", "512", "--chart", str(chart))
        assert produced["records"] == 3000 and produced["MiB/s"] > 0
        assert 0 < produced["p50 ms"] <= produced["p99 ms"]
        assert chart.read_bytes().startswith(b"\x89PNG")
        [consumed] = ok(broker, "bench", "consume", "load")
        assert consumed["records"] == 3000 and consumed["MiB/s"] > 0
    finally:
        broker.stop()
    compare = subprocess.run(
        [sys.executable, "-m", "tidelog", "bench", "compare", "--help"], capture_output=True, text=True, timeout=60
    )
    assert compare.returncode == 0 and "--chart-only" in compare.stdout  # bench/compare.py's own help
