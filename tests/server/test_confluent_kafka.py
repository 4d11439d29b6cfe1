"""confluent-kafka (librdkafka) against a real broker: topics, every codec, byte-exact reads,
offsets by time, and the admin calls it has."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from tests.server.conftest import BrokerProcess, free_port
from tests.server.scenario import CODECS, Sent, records_for

TIMEOUT_S = 15


def admin(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(broker: BrokerProcess, *topics: NewTopic) -> None:
    client = admin(broker)  # kept alive until the futures are done
    for future in client.create_topics(list(topics)).values():
        future.result(TIMEOUT_S)


def produce(broker: BrokerProcess, topic: str, records: list[Sent], **config: object) -> list[tuple[int, int]]:
    delivered: list[tuple[int, int]] = []

    def on_delivery(error: object, message: object) -> None:
        assert error is None, error
        delivered.append((message.partition(), message.offset()))  # type: ignore[attr-defined]

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, **config})
    for record in records:
        producer.produce(
            topic,
            value=record.value,
            key=record.key,
            headers=list(record.headers),
            timestamp=record.timestamp_ms,
            partition=0,
            on_delivery=on_delivery,
        )
    assert producer.flush(TIMEOUT_S) == 0
    return delivered


def consume(broker: BrokerProcess, topic: str, count: int, partition: int = 0, **config: object) -> list[object]:
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False, **config}
    )
    consumer.assign([TopicPartition(topic, partition, 0)])
    messages: list[object] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(messages) < count and time.monotonic() < deadline:
        for message in consumer.consume(500, 0.5):
            assert message.error() is None, message.error()
            messages.append(message)
    consumer.close()
    return messages


@pytest.mark.parametrize(("acks", "idempotent"), [("1", False), ("all", False), ("all", True)])
def test_every_codec_round_trips_byte_exact(broker: BrokerProcess, acks: str, idempotent: bool) -> None:
    create(broker, *(NewTopic(f"codec-{codec}", 1, 1) for codec in CODECS))
    for codec in CODECS:
        sent = records_for(codec)
        config = {"compression.type": codec, "acks": acks, "enable.idempotence": idempotent}
        delivered = produce(broker, f"codec-{codec}", sent, **config)
        assert sorted(offset for _, offset in delivered) == list(range(len(sent)))
        got = consume(broker, f"codec-{codec}", len(sent))
        assert [m.offset() for m in got] == list(range(len(sent)))  # type: ignore[attr-defined]
        for record, message in zip(sent, got, strict=True):
            assert message.key() == record.key and message.value() == record.value  # type: ignore[attr-defined]
            assert tuple(message.headers() or ()) == record.headers  # type: ignore[attr-defined]
            assert message.timestamp()[1] == record.timestamp_ms  # type: ignore[attr-defined]


def test_offsets_earliest_latest_and_by_time(broker: BrokerProcess) -> None:
    create(broker, NewTopic("offsets", 1, 1))
    sent = records_for("none")
    produce(broker, "offsets", sent)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    low, high = consumer.get_watermark_offsets(TopicPartition("offsets", 0), TIMEOUT_S)
    assert (low, high) == (0, len(sent))
    wanted = [TopicPartition("offsets", 0, sent[57].timestamp_ms - 3)]
    (found,) = consumer.offsets_for_times(wanted, TIMEOUT_S)
    assert found.offset == 57
    (beyond,) = consumer.offsets_for_times([TopicPartition("offsets", 0, sent[-1].timestamp_ms + 1)], TIMEOUT_S)
    assert beyond.offset == -1
    consumer.close()


def test_admin_calls(broker: BrokerProcess) -> None:
    client = admin(broker)
    create(broker, NewTopic("admin-t", 2, 1, config={"retention.ms": "3600000"}))
    with pytest.raises(KafkaException, match="TOPIC_ALREADY_EXISTS"):
        client.create_topics([NewTopic("admin-t", 2, 1)])["admin-t"].result(TIMEOUT_S)
    with pytest.raises(KafkaException, match="INVALID_REPLICATION_FACTOR"):
        client.create_topics([NewTopic("admin-rf", 1, 3)])["admin-rf"].result(TIMEOUT_S)

    resource = ConfigResource(ConfigResource.Type.TOPIC, "admin-t")
    configs = client.describe_configs([resource])[resource].result(TIMEOUT_S)
    assert configs["retention.ms"].value == "3600000" and not configs["retention.ms"].is_default
    assert configs["segment.bytes"].value == str(1 << 30)

    change = ConfigResource(
        ConfigResource.Type.TOPIC,
        "admin-t",
        incremental_configs=[ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)],
    )
    client.incremental_alter_configs([change])[change].result(TIMEOUT_S)
    configs = client.describe_configs([resource])[resource].result(TIMEOUT_S)
    assert configs["retention.ms"].value == "1000"

    client.create_partitions([NewPartitions("admin-t", 4)])["admin-t"].result(TIMEOUT_S)
    metadata = client.list_topics("admin-t", timeout=TIMEOUT_S)
    assert len(metadata.topics["admin-t"].partitions) == 4

    produce(broker, "admin-t", records_for("none")[:50])
    deleted = client.delete_records([TopicPartition("admin-t", 0, 20)])
    assert deleted[TopicPartition("admin-t", 0, 20)].result(TIMEOUT_S).low_watermark == 20  # type: ignore[index]
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    assert consumer.get_watermark_offsets(TopicPartition("admin-t", 0), TIMEOUT_S) == (20, 50)
    consumer.close()

    cluster = client.describe_cluster().result(TIMEOUT_S)
    assert [node.port for node in cluster.nodes] == [broker.port]

    client.delete_topics(["admin-t"])["admin-t"].result(TIMEOUT_S)
    assert "admin-t" not in client.list_topics(timeout=TIMEOUT_S).topics


def test_auto_created_topic_on_produce(broker: BrokerProcess) -> None:
    delivered = produce(broker, "auto-created", records_for("none")[:10])
    assert len(delivered) == 10


def test_round_trip_on_uvloop(tmp_path: Path) -> None:
    """tidelog.event.loop=uvloop: same answers; fetched records are copied (uvloop has no sendfile)."""
    process = BrokerProcess(tmp_path / "data", free_port(), {"tidelog.event.loop": "uvloop"}).start()
    try:
        create(process, NewTopic("on-uvloop", 1, 1))
        sent = records_for("zstd")
        produce(process, "on-uvloop", sent, **{"compression.type": "zstd", "acks": "all"})
        got = consume(process, "on-uvloop", len(sent))
        assert [(m.offset(), m.value()) for m in got] == [(i, r.value) for i, r in enumerate(sent)]  # type: ignore[attr-defined]
    finally:
        assert process.stop() == 0
