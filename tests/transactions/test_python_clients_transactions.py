"""kafka-python 3.x (InitProducerId v4, AddPartitionsToTxn v3, TxnOffsetCommit v3 with the
consumer's group metadata) and aiokafka (v0 of everything, offsets by group id only) as
transactional producers against a real broker: commit, abort, offsets in the transaction, and
what read_committed consumers see."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import OffsetAndMetadata as AioOffset
from aiokafka.structs import TopicPartition as AioTopicPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata

from tests.server.conftest import BrokerProcess, free_port
from tests.transactions.test_confluent_transactions import read_all

TIMEOUT_MS = 20_000


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    settings = {"transaction.state.log.num.partitions": "3", "offsets.topic.num.partitions": "3"}
    process = BrokerProcess(tmp_path / "data", free_port(), settings).start()
    admin = KafkaAdminClient(bootstrap_servers=process.bootstrap)
    admin.create_topics([NewTopic(t, 3, 1) for t in ("kp-out", "aio-out", "src")])
    admin.close()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


def test_kafka_python_commit_abort_and_offsets(broker: BrokerProcess) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="kp-writer")
    producer.init_transactions()
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id="kp-group",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    consumer.assign([TopicPartition("src", 0)])
    kept = []
    for round_ in range(3):
        producer.begin_transaction()
        for partition in range(3):
            value = f"kp-{round_}-{partition}".encode()
            producer.send("kp-out", value=value, partition=partition)
            if round_ != 1:
                kept.append(value)
        offsets = {TopicPartition("src", 0): OffsetAndMetadata(10 * (round_ + 1), "", -1)}
        producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
        if round_ == 1:
            producer.flush()
            producer.abort_transaction()
        else:
            producer.commit_transaction()
    producer.close()
    assert read_all(broker, "kp-out", "read_committed") == sorted(kept)
    assert len(read_all(broker, "kp-out", "read_uncommitted")) == 9
    assert consumer.committed(TopicPartition("src", 0)) == 30
    consumer.close()


def test_aiokafka_commit_abort_and_offsets(broker: BrokerProcess) -> None:
    async def main() -> tuple[list[bytes], int | None]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="aio-writer")
        await producer.start()
        kept = []
        try:
            for round_ in range(3):
                async with producer.transaction():
                    for partition in range(3):
                        value = f"aio-{round_}-{partition}".encode()
                        await producer.send_and_wait("aio-out", value=value, partition=partition)
                        kept.append(value)
                    offsets = {AioTopicPartition("src", 1): AioOffset(5 * (round_ + 1), "")}
                    await producer.send_offsets_to_transaction(offsets, "aio-group")
            await producer.begin_transaction()
            await producer.send_and_wait("aio-out", value=b"aio-aborted", partition=0)
            await producer.send_offsets_to_transaction({AioTopicPartition("src", 1): AioOffset(99, "")}, "aio-group")
            await producer.abort_transaction()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="aio-group")
        await consumer.start()
        try:
            committed = await consumer.committed(AioTopicPartition("src", 1))
        finally:
            await consumer.stop()
        return sorted(kept), committed

    kept, committed = asyncio.run(main())
    assert read_all(broker, "aio-out", "read_committed") == kept
    assert b"aio-aborted" in read_all(broker, "aio-out", "read_uncommitted")
    assert committed == 15
