"""aiokafka against a real broker: every codec byte-exact, offsets, and its admin client."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.server.conftest import BrokerProcess
from tests.server.scenario import CODECS, records_for

TIMEOUT_S = 15


async def round_trip(bootstrap: str, acks: object, idempotent: bool = False) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(f"aio-{codec}", 1, 1) for codec in CODECS])
    await admin.close()
    for codec in CODECS:
        topic = f"aio-{codec}"
        sent = records_for(codec)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks=acks,
            linger_ms=5,
            enable_idempotence=idempotent,
            compression_type=None if codec == "none" else codec,
        )
        await producer.start()
        futures = [
            await producer.send(
                topic, value=r.value, key=r.key, headers=list(r.headers), timestamp_ms=r.timestamp_ms, partition=0
            )
            for r in sent
        ]
        offsets = [(await f).offset for f in futures]
        await producer.stop()
        assert offsets == list(range(len(sent)))
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_beginning()
        got = []
        while len(got) < len(sent):
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), TIMEOUT_S)
            for messages in batches.values():
                got.extend(messages)
        await consumer.stop()
        assert [m.offset for m in got] == list(range(len(sent)))
        for record, message in zip(sent, got, strict=True):
            assert (message.key, message.value, message.timestamp) == (record.key, record.value, record.timestamp_ms)
            assert tuple(message.headers) == record.headers


@pytest.mark.parametrize(("acks", "idempotent"), [(1, False), ("all", False), ("all", True)])
def test_every_codec_round_trips_byte_exact(broker: BrokerProcess, acks: object, idempotent: bool) -> None:
    asyncio.run(round_trip(broker.bootstrap, acks, idempotent))


async def offsets(bootstrap: str) -> None:
    sent = records_for("none")
    # acks=all: an acks=1 answer comes before the fsync, and the high watermark (what LATEST
    # answers) moves only after it, so with acks=1 the end offset can lag on a slow disk.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    futures = [
        await producer.send(
            "aio-offsets", value=record.value, key=record.key, timestamp_ms=record.timestamp_ms, partition=0
        )
        for record in sent
    ]
    assert [(await f).offset for f in futures] == list(range(len(sent)))
    await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    tp = TopicPartition("aio-offsets", 0)
    assert (await consumer.beginning_offsets([tp]))[tp] == 0
    assert (await consumer.end_offsets([tp]))[tp] == len(sent)
    found = (await consumer.offsets_for_times({tp: sent[33].timestamp_ms}))[tp]
    assert (found.offset, found.timestamp) == (33, sent[33].timestamp_ms)
    await consumer.stop()


def test_offsets_on_an_auto_created_topic(broker: BrokerProcess) -> None:
    asyncio.run(offsets(broker.bootstrap))


async def admin_calls(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic("aio-admin", 2, 1, topic_configs={"retention.ms": "120000"})])
    assert "aio-admin" in await admin.list_topics()
    (described,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "aio-admin")])
    entries = {entry[0]: entry[1] for entry in described.resources[0][4]}
    assert entries["retention.ms"] == "120000" and entries["segment.bytes"] == str(1 << 30)
    await admin.create_partitions({"aio-admin": NewPartitions(total_count=3)})
    (topic,) = await admin.describe_topics(["aio-admin"])
    assert len(topic["partitions"]) == 3
    cluster = await admin.describe_cluster()
    assert [b["port"] for b in cluster["brokers"]] == [int(bootstrap.rsplit(":", 1)[1])]
    # acks=all: DeleteRecords may only cut below the high watermark, which acks=1 data reaches
    # a few milliseconds later (at the next background flush).
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    for i in range(30):
        await producer.send("aio-admin", value=b"v%d" % i, partition=0)
    await producer.flush()
    await producer.stop()
    deleted = await admin.delete_records({TopicPartition("aio-admin", 0): RecordsToDelete(before_offset=10)})
    assert deleted[TopicPartition("aio-admin", 0)] == 10
    await admin.delete_topics(["aio-admin"])
    assert "aio-admin" not in await admin.list_topics()
    await admin.close()


def test_admin_calls(broker: BrokerProcess) -> None:
    asyncio.run(admin_calls(broker.bootstrap))
