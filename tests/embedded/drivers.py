"""Two ways to drive one broker for the shared scenarios: a Kafka client over TCP (confluent-
kafka against the in-process server, plus raw requests where a client hides the wire), and the
native API. A scenario written against `Driver` runs through both."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest

import tidelog
from tests.server.scenario import Sent
from tests.server.test_bad_input import produce as wire_produce
from tests.server.wire_client import WireClient
from tidelog.protocol.record_batch import build_batch

TIMEOUT_S = 20


@dataclass(frozen=True)
class Got:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int


class Driver(Protocol):
    name: str

    def create_topic(self, topic: str, partitions: int) -> None: ...

    def produce(self, topic: str, partition: int, records: list[Sent]) -> list[int]:
        """Appends in order; the offsets they got."""
        ...

    def consume(self, topic: str, partition: int, offset: int, count: int, timeout_s: float = TIMEOUT_S) -> list[Got]:
        """Up to `count` records from `offset`, waiting at most `timeout_s` for them."""
        ...

    def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None: ...

    def committed(self, group: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]: ...

    def idempotent_retried(self, topic: str, partition: int, records: list[Sent]) -> tuple[int, int]:
        """Sends one idempotent batch twice (a retry); the base offsets both attempts answered."""
        ...


class NativeDriver:
    name = "native"

    def __init__(self, log: tidelog.Log) -> None:
        self.log = log

    def create_topic(self, topic: str, partitions: int) -> None:
        self.log.create_topic(topic, partitions)

    def produce(self, topic: str, partition: int, records: list[Sent]) -> list[int]:
        appended = self.log.append_many(
            topic,
            [tidelog.AppendRecord(r.value, r.key, r.headers, r.timestamp_ms) for r in records],
            partition=partition,
        )
        (result,) = appended
        return list(range(result.base_offset, result.last_offset + 1))

    def consume(self, topic: str, partition: int, offset: int, count: int, timeout_s: float = TIMEOUT_S) -> list[Got]:
        got: list[Got] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count and time.monotonic() < deadline:
            records, offset = self.log.read_with_next(topic, partition, offset, max_records=count - len(got))
            got += [Got(r.offset, r.key, r.value, tuple(r.headers), r.timestamp) for r in records]
        return got

    def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        self.log.commit_offsets(group, offsets)

    def committed(self, group: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return self.log.committed_offsets(group, partitions)

    def idempotent_retried(self, topic: str, partition: int, records: list[Sent]) -> tuple[int, int]:
        producer = self.log.idempotent_producer()
        inputs = [tidelog.AppendRecord(r.value, r.key, r.headers, r.timestamp_ms) for r in records]
        ((target, batch, count, _),) = producer.batches(topic, inputs, partition)
        first = producer.retry_batch(topic, target, batch, count, producer.log._acks_for("fsync"))
        again = producer.retry_batch(topic, target, batch, count, producer.log._acks_for("fsync"))
        assert again.duplicate and not first.duplicate
        return first.base_offset, again.base_offset


class KafkaDriver:
    name = "kafka"

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.port = int(bootstrap.rsplit(":", 1)[1])

    def create_topic(self, topic: str, partitions: int) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
            future.result(TIMEOUT_S)

    def produce(self, topic: str, partition: int, records: list[Sent]) -> list[int]:
        offsets: list[int] = []

        def delivered(error: object, message: object) -> None:
            assert error is None, error
            offsets.append(message.offset())  # type: ignore[attr-defined]

        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "acks": "all"})
        for r in records:
            producer.produce(
                topic,
                r.value,
                r.key,
                partition,
                on_delivery=delivered,
                timestamp=r.timestamp_ms,
                headers=list(r.headers),
            )
        assert producer.flush(TIMEOUT_S) == 0
        return offsets

    def consume(self, topic: str, partition: int, offset: int, count: int, timeout_s: float = TIMEOUT_S) -> list[Got]:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "driver", "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, partition, offset)])
        got: list[Got] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count and time.monotonic() < deadline:
            for m in consumer.consume(count - len(got), 0.5):
                assert m.error() is None, m.error()
                headers = tuple(m.headers() or ())
                got.append(Got(m.offset(), m.key(), m.value(), headers, m.timestamp()[1]))
        consumer.close()
        return got

    def _consumer(self, group: str) -> Consumer:
        return Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False})

    def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        consumer = self._consumer(group)
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        consumer.close()

    def committed(self, group: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        consumer = self._consumer(group)
        found = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=TIMEOUT_S)
        consumer.close()
        return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}

    def idempotent_retried(self, topic: str, partition: int, records: list[Sent]) -> tuple[int, int]:
        assert partition == 0, "the raw produce helper writes partition 0"
        client = WireClient(self.port)
        answer = client.request(
            22,
            4,
            InitProducerIdRequest(
                transactional_id=None,
                transaction_timeout=datetime.timedelta(seconds=60),
                producer_id=-1,
                producer_epoch=-1,
            ),
        )
        inputs = [(r.timestamp_ms, r.key, r.value, list(r.headers)) for r in records]
        batch = build_batch(
            inputs, producer_id=answer.producer_id, producer_epoch=answer.producer_epoch, base_sequence=0
        )
        first, again = wire_produce(client, topic, batch), wire_produce(client, topic, batch)
        client.close()
        assert first.error_code == again.error_code == 0
        return first.base_offset, again.base_offset
