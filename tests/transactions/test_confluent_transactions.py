"""confluent-kafka (librdkafka, TV1: AddPartitionsToTxn v0, EndTxn v1, TxnOffsetCommit v3) against
a real broker: a transactional producer across 3 topics x 3 partitions commits and aborts; the
consumer's positions are committed inside the transaction; read_committed consumers see exactly
the committed records, read_uncommitted ones everything."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.read_back import read_to_end
from tests.server.conftest import BrokerProcess, free_port

TIMEOUT_S = 20
TOPICS = ("t-one", "t-two", "t-three")
PARTITIONS = 3


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    settings = {"transaction.state.log.num.partitions": "5", "offsets.topic.num.partitions": "5"}
    process = BrokerProcess(tmp_path / "data", free_port(), settings).start()
    admin = AdminClient({"bootstrap.servers": process.bootstrap})
    topics = [NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in (*TOPICS, "input")]
    for future in admin.create_topics(topics).values():
        future.result(TIMEOUT_S)
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


def transactional_producer(broker: BrokerProcess, transactional_id: str) -> Producer:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": transactional_id, "linger.ms": 5})
    producer.init_transactions(TIMEOUT_S)
    return producer


def read_all(broker: BrokerProcess, topic: str, isolation: str, partitions: int = PARTITIONS) -> list[bytes]:
    """Every value of `topic` a consumer with `isolation` gets, read to the end, sorted."""
    return sorted(read_to_end(broker.bootstrap, topic, partitions, isolation, TIMEOUT_S).values())


def test_commit_and_abort_across_topics(broker: BrokerProcess) -> None:
    producer = transactional_producer(broker, "writer")
    committed, aborted = [], []
    for round_ in range(4):
        producer.begin_transaction()
        keep = round_ % 2 == 0
        for topic in TOPICS:
            for partition in range(PARTITIONS):
                value = f"{topic}/{partition}/{round_}".encode()
                producer.produce(topic, value=value, partition=partition)
                (committed if keep else aborted).append((topic, value))
        if keep:
            producer.commit_transaction(TIMEOUT_S)
        else:
            producer.flush(TIMEOUT_S)  # the records are in the log before the abort
            producer.abort_transaction(TIMEOUT_S)
    for topic in TOPICS:
        wanted = sorted(v for t, v in committed if t == topic)
        everything = sorted(v for t, v in committed + aborted if t == topic)
        assert read_all(broker, topic, "read_committed") == wanted
        assert read_all(broker, topic, "read_uncommitted") == everything


def test_read_process_write_commits_the_consumer_position_in_the_transaction(broker: BrokerProcess) -> None:
    seed = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(30):
        seed.produce("input", value=f"in-{i}".encode(), partition=i % PARTITIONS)
    seed.flush(TIMEOUT_S)
    group = "copier"
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(["input"])
    producer = transactional_producer(broker, "copier-0")
    copied = 0
    deadline = time.monotonic() + TIMEOUT_S
    while copied < 30:
        assert time.monotonic() < deadline, f"copied {copied} of 30"
        messages = consumer.consume(10, 1.0)
        messages = [m for m in messages if not m.error()]
        if not messages:
            continue
        producer.begin_transaction()
        for message in messages:
            producer.produce("t-one", value=b"copy-" + message.value(), partition=message.partition())
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), TIMEOUT_S
        )
        producer.commit_transaction(TIMEOUT_S)
        copied += len(messages)
    consumer.close()
    assert read_all(broker, "t-one", "read_committed") == sorted(f"copy-in-{i}".encode() for i in range(30))
    # The group's committed offsets are the ends of the input partitions.
    check = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "isolation.level": "read_committed"})
    positions = check.committed([TopicPartition("input", p) for p in range(PARTITIONS)], TIMEOUT_S)
    check.close()
    assert [tp.offset for tp in positions] == [10, 10, 10]
