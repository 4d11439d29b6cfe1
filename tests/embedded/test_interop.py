"""Records appended natively are consumed byte-exact by Kafka clients through the in-process
server, and records Kafka clients produce (every codec) are read natively as sent; a native
commit is what Kafka's own `kafka-consumer-groups --describe` shows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition

import tidelog
from tests.server.scenario import CODECS, Sent, records_for
from tests.server.test_groups import HAVE_JAVA, consumer_groups, table
from tidelog.embedded import EmbeddedServer, serve

TIMEOUT_S = 20
Seen = tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...], int]


@pytest.fixture
def both(tmp_path: Path) -> Iterator[tuple[EmbeddedServer, tidelog.Log]]:
    with serve(tmp_path, config={"group.initial.rebalance.delay.ms": "0"}) as server, tidelog.open(tmp_path) as log:
        yield server, log


def appended(log: tidelog.Log, topic: str) -> list[Sent]:
    sent = records_for("none")
    log.create_topic(topic)
    log.append_many(topic, [tidelog.AppendRecord(s.value, s.key, s.headers, s.timestamp_ms) for s in sent[:120]])
    for s in sent[120:]:
        log.append(topic, s.value, key=s.key, headers=s.headers, timestamp=s.timestamp_ms)
    return sent


def expected(sent: list[Sent]) -> list[Seen]:
    return [(i, s.key, s.value, s.headers, s.timestamp_ms) for i, s in enumerate(sent)]


def confluent_read(bootstrap: str, topic: str, count: int) -> list[Seen]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[Seen] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < count and time.monotonic() < deadline:
        for m in consumer.consume(500, 0.5):
            assert m.error() is None, m.error()
            got.append((m.offset(), m.key(), m.value(), tuple(m.headers() or ()), m.timestamp()[1]))
    consumer.close()
    return got


def kafka_python_read(bootstrap: str, topic: str, count: int) -> list[Seen]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=TIMEOUT_S * 1000
    )
    consumer.assign([KafkaTopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    got: list[Seen] = []
    for m in consumer:
        got.append((m.offset, m.key, m.value, tuple(m.headers), m.timestamp))
        if len(got) == count:
            break
    consumer.close()
    return got


def aiokafka_read(bootstrap: str, topic: str, count: int) -> list[Seen]:
    async def read() -> list[Seen]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        consumer.assign([AioTopicPartition(topic, 0)])
        await consumer.seek_to_beginning()
        got: list[Seen] = []
        try:
            while len(got) < count:
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), TIMEOUT_S)
                for messages in batches.values():
                    got += [(m.offset, m.key, m.value, tuple(m.headers), m.timestamp) for m in messages]
        finally:
            await consumer.stop()
        return got

    return asyncio.run(read())


READERS = {"confluent-kafka": confluent_read, "kafka-python": kafka_python_read, "aiokafka": aiokafka_read}


@pytest.mark.parametrize("client", sorted(READERS))
def test_kafka_clients_read_native_appends_byte_exact(both: tuple[EmbeddedServer, tidelog.Log], client: str) -> None:
    server, log = both
    sent = appended(log, "native")
    assert READERS[client](server.bootstrap, "native", len(sent)) == expected(sent)


def confluent_write(bootstrap: str, topic: str, sent: list[Sent], codec: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5})
    for s in sent:
        producer.produce(topic, s.value, s.key, 0, timestamp=s.timestamp_ms, headers=list(s.headers))
    assert producer.flush(TIMEOUT_S) == 0


def kafka_python_write(bootstrap: str, topic: str, sent: list[Sent], codec: str) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, compression_type=None if codec == "none" else codec
    )
    for s in sent:
        producer.send(
            topic, value=s.value, key=s.key, headers=list(s.headers), timestamp_ms=s.timestamp_ms, partition=0
        )
    producer.flush()
    producer.close()


def aiokafka_write(bootstrap: str, topic: str, sent: list[Sent], codec: str) -> None:
    async def write() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, compression_type=None if codec == "none" else codec
        )
        await producer.start()
        try:
            futures = [
                await producer.send(
                    topic, s.value, s.key, partition=0, timestamp_ms=s.timestamp_ms, headers=list(s.headers)
                )
                for s in sent
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(write())


WRITERS = {"confluent-kafka": confluent_write, "kafka-python": kafka_python_write, "aiokafka": aiokafka_write}


@pytest.mark.parametrize("client", sorted(WRITERS))
def test_native_reads_what_kafka_clients_produce_with_every_codec(
    both: tuple[EmbeddedServer, tidelog.Log], client: str
) -> None:
    server, log = both
    for codec in CODECS:
        topic = f"{client}-{codec}"
        log.create_topic(topic)
        sent = records_for(codec)
        WRITERS[client](server.bootstrap, topic, sent, codec)
        got = [(r.offset, r.key, r.value, r.headers, r.timestamp) for r in log_tail(log, topic, len(sent))]
        assert got == expected(sent), codec
        columns = log.read_columns(topic, 0, 0)
        assert [(columns.key(i), columns.value(i)) for i in range(len(columns))] == [(s.key, s.value) for s in sent]


def log_tail(log: tidelog.Log, topic: str, count: int) -> list[tidelog.Record]:
    records = []
    for record in log.tail(topic, 0, 0, timeout=TIMEOUT_S):
        records.append(record)
        if len(records) == count:
            break
    return records


@pytest.mark.skipif(not HAVE_JAVA, reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)")
def test_a_native_commit_is_what_kafka_consumer_groups_describes(both: tuple[EmbeddedServer, tidelog.Log]) -> None:
    server, log = both
    log.create_topic("billing", partitions=2)
    log.append_many("billing", [b"a", b"b", b"c"], partition=0)
    log.append_many("billing", [b"d"], partition=1)
    log.commit_offsets("invoicer", {("billing", 0): 2, ("billing", 1): 1})
    rows = table(consumer_groups(server, "--describe", "--group", "invoicer"))  # type: ignore[arg-type]
    found = {(r["TOPIC"], int(r["PARTITION"])): (r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"]) for r in rows}
    assert found == {("billing", 0): ("2", "3", "1"), ("billing", 1): ("1", "1", "0")}
    # And the other way: what Kafka's tool resets, the native API reads.
    consumer_groups(
        server, "--reset-offsets", "--group", "invoicer", "--topic", "billing", "--to-earliest", "--execute"
    )  # type: ignore[arg-type]
    assert log.committed_offsets("invoicer") == {("billing", 0): 0, ("billing", 1): 0}
