"""tidelog.testing as a user's test suite would use it: ask for `tidelog_bootstrap`, point a
Kafka client at it. (The plugin is registered by tidelog's `pytest11` entry point.)"""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition

from tidelog.embedded import EmbeddedServer


def test_a_user_tests_kafka_code_against_the_fixture(tidelog_bootstrap: str) -> None:
    producer = Producer({"bootstrap.servers": tidelog_bootstrap, "acks": "all"})
    for i in range(10):
        producer.produce("orders", key=f"order-{i}".encode(), value=b"placed")
    assert producer.flush(15) == 0  # the topic was auto-created, as on a default Kafka broker
    consumer = Consumer(
        {"bootstrap.servers": tidelog_bootstrap, "group.id": "shipping", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe(["orders"])
    got = []
    while len(got) < 10:
        message = consumer.poll(15)
        assert message is not None and message.error() is None
        got.append(message.key())
    consumer.commit(asynchronous=False)
    assert consumer.committed([TopicPartition("orders", 0)], timeout=15)[0].offset == 10
    consumer.close()
    assert sorted(got) == sorted(f"order-{i}".encode() for i in range(10))


def test_each_test_gets_a_fresh_broker(tidelog_server: EmbeddedServer) -> None:
    from confluent_kafka.admin import AdminClient

    topics = AdminClient({"bootstrap.servers": tidelog_server.bootstrap}).list_topics(timeout=15).topics
    assert "orders" not in topics
