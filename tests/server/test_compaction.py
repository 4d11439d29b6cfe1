"""The log cleaner in a running broker: the internal topics are compacted by default, and what the
coordinators rebuild after a restart is unchanged by it (issue 15)."""

from __future__ import annotations

import re
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.server.conftest import BrokerProcess, free_port, wait_until
from tidelog import limits

SETTINGS = {
    "log.cleaner.backoff.ms": "100",
    # Small segments everywhere (the internal topics too), so the commits below fill many.
    "tidelog.internal.log.segment.bytes": "4096",
    "offsets.topic.num.partitions": "1",
    "group.initial.rebalance.delay.ms": "0",
}
COMMITS = 400
PARTITIONS = 4
CLEANED = re.compile(r"cleaned __consumer_offsets-0: (\d+) segment\(s\) -> (\d+), (\d+) -> (\d+) bytes")


def thread_nice_values(broker: BrokerProcess) -> set[int]:
    """The nice value of each thread of the broker's process (field 19 of /proc/PID/task/TID/stat)."""
    assert broker.process is not None
    values = set()
    for stat in Path(f"/proc/{broker.process.pid}/task").glob("*/stat"):
        fields = stat.read_text().rsplit(")", 1)[1].split()
        values.add(int(fields[16]))
    return values


def offsets_bytes(data_dir: Path) -> int:
    return sum(path.stat().st_size for path in (data_dir / "__consumer_offsets-0").glob("*.log"))


def commit_many(bootstrap: str, group: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    last = {}
    try:
        for i in range(COMMITS):
            partition = i % PARTITIONS
            last[partition] = i
            consumer.commit(offsets=[TopicPartition("events", partition, i)], asynchronous=False)
    finally:
        consumer.close()
    return last


def committed(bootstrap: str, group: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        wanted = [TopicPartition("events", p) for p in range(PARTITIONS)]
        return {tp.partition: tp.offset for tp in consumer.committed(wanted, timeout=30)}
    finally:
        consumer.close()


def test_consumer_offsets_are_compacted_and_a_restart_replays_the_same_offsets(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # First without the cleaner: every commit stays a record of its own.
    broker = BrokerProcess(data_dir, free_port(), {**SETTINGS, "log.cleaner.enable": "false"}).start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic("events", PARTITIONS, 1)])["events"].result(30)
        expected = commit_many(broker.bootstrap, "g1")
    finally:
        broker.stop()
    written = offsets_bytes(data_dir)
    assert written > COMMITS * 50
    broker = BrokerProcess(data_dir, free_port(), SETTINGS).start()
    try:
        wait_until(lambda: CLEANED.search(broker.log_text()) is not None, timeout_s=30)
        wait_until(lambda: offsets_bytes(data_dir) < written / 4, timeout_s=30)
        assert committed(broker.bootstrap, "g1") == expected
    finally:
        broker.stop()
    restarted = BrokerProcess(data_dir, free_port(), SETTINGS).start()
    try:
        assert committed(restarted.bootstrap, "g1") == expected
    finally:
        restarted.stop()


def test_page_cache_acks_still_let_the_cleaner_work(tmp_path: Path) -> None:
    """With `tidelog.flush.before.ack=false` nothing waits for fsync, yet a roll flushes the
    sealed segment (as in Kafka), so the recovery point, above which the cleaner never cleans,
    passes it while the broker runs."""
    settings = {**SETTINGS, "tidelog.flush.before.ack": "false"}
    broker = BrokerProcess(tmp_path / "data", free_port(), settings).start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        config = {"cleanup.policy": "compact", "internal.segment.bytes": "4096", "min.cleanable.dirty.ratio": "0.01"}
        admin.create_topics([NewTopic("table", 1, 1, config=config)])["table"].result(30)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        latest = {}
        for i in range(COMMITS):
            key = f"k{i % 10}"
            latest[key] = f"v{i}"
            producer.produce("table", key=key, value=latest[key])
            if i % 20 == 19:  # a request each, so that segments roll
                assert producer.flush(30) == 0
        cleaned = re.compile(r"cleaned table-0: (\d+) segment\(s\) -> (\d+)")
        wait_until(lambda: cleaned.search(broker.log_text()) is not None, timeout_s=30)
        assert limits.CLEANER_THREAD_NICE in thread_nice_values(broker)  # the cleaner's thread yields
        consumer = Consumer(
            {"bootstrap.servers": broker.bootstrap, "group.id": "reader", "auto.offset.reset": "earliest"}
        )
        seen: dict[str, str] = {}
        count = 0
        try:
            consumer.assign([TopicPartition("table", 0, 0)])
            while len(seen) < len(latest) or seen != latest:
                message = consumer.poll(10)
                assert message is not None, f"read stopped at {seen}"
                assert message.error() is None, message.error()
                seen[message.key().decode()] = message.value().decode()
                count += 1
        finally:
            consumer.close()
        assert count < COMMITS  # superseded records went
    finally:
        broker.stop()
