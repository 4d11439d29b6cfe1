"""kafka-python against a real broker: topics, every codec, byte-exact reads, offsets, admin."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import TopicAlreadyExistsError

from tests.server.conftest import BrokerProcess
from tests.server.scenario import CODECS, records_for

TIMEOUT_MS = 15_000


@pytest.mark.parametrize("acks", [1, "all"])
def test_every_codec_round_trips_byte_exact(broker: BrokerProcess, acks: object) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(f"kp-{codec}", 1, 1) for codec in CODECS])
    for codec in CODECS:
        topic = f"kp-{codec}"
        sent = records_for(codec)
        # With acks=all the producer is idempotent (kafka-python's default): InitProducerId first.
        producer = KafkaProducer(
            bootstrap_servers=broker.bootstrap,
            acks=acks,
            linger_ms=5,
            enable_idempotence=acks == "all",
            compression_type=None if codec == "none" else codec,
        )
        futures = [
            producer.send(
                topic, value=r.value, key=r.key, headers=list(r.headers), timestamp_ms=r.timestamp_ms, partition=0
            )
            for r in sent
        ]
        producer.flush()
        assert [f.get(timeout=15).offset for f in futures] == list(range(len(sent)))
        producer.close()
        consumer = KafkaConsumer(
            bootstrap_servers=broker.bootstrap, enable_auto_commit=False, consumer_timeout_ms=TIMEOUT_MS
        )
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        got = []
        for message in consumer:
            got.append(message)
            if len(got) == len(sent):
                break
        consumer.close()
        assert [m.offset for m in got] == list(range(len(sent)))
        for record, message in zip(sent, got, strict=True):
            assert (message.key, message.value, message.timestamp) == (record.key, record.value, record.timestamp_ms)
            assert tuple(message.headers) == record.headers
    admin.close()


def test_offsets_and_admin(broker: BrokerProcess) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic("kp-admin", 2, 1, topic_configs={"retention.ms": "3600000"})])
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics([NewTopic("kp-admin", 2, 1)])
    sent = records_for("none")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)  # idempotent: kafka-python's default
    for record in sent:
        producer.send("kp-admin", value=record.value, key=record.key, timestamp_ms=record.timestamp_ms, partition=1)
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    tp = TopicPartition("kp-admin", 1)
    assert consumer.beginning_offsets([tp])[tp] == 0
    assert consumer.end_offsets([tp])[tp] == len(sent)
    found = consumer.offsets_for_times({tp: sent[120].timestamp_ms - 5})[tp]
    assert (found.offset, found.timestamp) == (120, sent[120].timestamp_ms)
    consumer.close()

    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "kp-admin")])
    entries = described["topic"]["kp-admin"]
    assert entries["retention.ms"]["value"] == "3600000"
    assert entries["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    admin.create_partitions({"kp-admin": NewPartitions(total_count=3)})
    assert len(admin.describe_topics(["kp-admin"])[0]["partitions"]) == 3
    admin.delete_records({tp: 100})
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    assert consumer.beginning_offsets([tp])[tp] == 100
    consumer.close()
    admin.delete_topics(["kp-admin"])
    assert "kp-admin" not in admin.list_topics()
    admin.close()
