"""Log compaction (issue 15) scenarios whose visible results must match Apache Kafka 4.4's, read
by real clients (confluent-kafka; Kafka's kafka-topics and kafka-configs): which offsets stay
once the cleaner has run, tombstones and their delete horizon, aborted transactions, the refusal
of records without a key, and the compaction configs.

Both brokers run their cleaner every `CLEANER_BACKOFF_MS` (conftest). Each record is its own
produce request, so the batches, and the offsets at which segments roll
(`internal.segment.bytes`), are the same on both. Every expectation is computed from the input
by Kafka's rules (`compacted`), so a scenario cannot pass by both brokers agreeing on a wrong
answer:

- only offsets below the active segment's base are cleaned (`segment_bases` gives it), and in
  that range a record stays only if it is the last of its key there: the active segment keeps
  everything, and a key overwritten there still keeps its last record below it;
- a tombstone stays on the first pass that sees it (it gets a delete horizon) and goes on a
  pass after the horizon;
- records of aborted transactions go, and do not count as a key's latest.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from kio.schema.errors import ErrorCode

from tests.compat.conftest import KAFKA_LIBS, CompactingBroker, kafka_available
from tests.compat.test_differential import create_topics, new_topic, wait_for_leader
from tests.server.test_bad_input import produce
from tests.server.wire_client import WireClient
from tidelog.protocol.record_batch import build_batch

Record = tuple[int, bytes | None, bytes | None]  # offset, key, value (None: a tombstone)

names = (f"compaction-{i}" for i in itertools.count())
SEGMENT_BYTES = 810  # ten records of the sizes below (81 bytes a batch)
KEY_BYTES, VALUE_BYTES = 5, 8
COMPACTED = {
    "cleanup.policy": "compact",
    "internal.segment.bytes": str(SEGMENT_BYTES),
    "min.cleanable.dirty.ratio": "0.01",
}
CLEAN_TIMEOUT_S = 20  # the cleaner runs every 100 ms; a pass over this data takes milliseconds
STABLE_S = 2.0  # a view unchanged this long, and smaller than the input: the cleaner is done
SETTLE_S = 0.5  # after the expected view is reached: passes after it must keep it
POLL_S = 0.1
REREADS = 12  # librdkafka doubles its fetch size at most 10 times from 1 MiB before it complains
DELIVERY_TIMEOUT_S = 15
TOOL_TIMEOUT_S = 60
# Kafka's tools run for a second or two: the C1 compiler only and the serial collector take
# about a third less CPU than the JVM's defaults.
SHORT_JVM = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]


def key(prefix: str, i: int) -> bytes:
    return f"{prefix}{i:04d}".encode()


def value(i: int) -> bytes:
    return f"v{i:07d}".encode()


def batch_bytes(key: bytes, value: bytes | None) -> int:
    """The size of a batch of one uncompressed record without headers, key and value under 64
    bytes (each length a one-byte varint): the 61-byte header, then the record's length,
    attributes, timestamp and offset deltas, key length and key, value length and value, and
    its header count."""
    assert len(key) < 64 and (value is None or len(value) < 64)
    body = 1 + 1 + 1 + 1 + len(key) + 1 + (0 if value is None else len(value)) + 1
    return 61 + 1 + body


def segment_bases(sizes: Iterable[int], limit: int) -> list[int]:
    """Kafka's roll rule: a batch goes to a new segment when the current one is not empty and
    would grow past `limit` with it. The last base is the active segment's."""
    bases, size = [0], 0
    for offset, batch in enumerate(sizes):
        if size > 0 and size + batch > limit:
            bases.append(offset)
            size = 0
        size += batch
    return bases


def compacted(records: Sequence[Record], cleanable_end: int, tombstones_gone: bool = False) -> list[Record]:
    """What a cleaned log shows of `records` (all of them committed or plain, in offset order):
    below `cleanable_end` the last record of each key there (a tombstone too, until
    `tombstones_gone`), and everything from `cleanable_end` on."""
    last = {k: o for o, k, _ in records if o < cleanable_end}
    return [
        (o, k, v) for o, k, v in records if o >= cleanable_end or (last[k] == o and not (tombstones_gone and v is None))
    ]


def create_topic(broker: CompactingBroker, **configs: str) -> str:
    client = WireClient(broker.port)
    name = next(names)
    assert create_topics(client, new_topic(name, **configs))[0].error_code == ErrorCode.none
    wait_for_leader(client, name)
    client.close()
    return name


class OneByOne:
    """A confluent-kafka producer that waits for each record's delivery before the next one, so
    every record is a batch of its own."""

    def __init__(self, broker: CompactingBroker, **config: Any) -> None:
        settings = {"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "acks": "all", "enable.idempotence": False}
        self.producer = Producer(settings | config)

    def send(self, topic: str, key: bytes | None, value: bytes | None) -> Message | KafkaError:
        """The delivered message, or the delivery error."""
        delivered: list[tuple[KafkaError | None, Message]] = []
        report = lambda e, m: delivered.append((e, m))  # noqa: E731
        self.producer.produce(topic, key=key, value=value, partition=0, on_delivery=report)
        assert self.producer.flush(DELIVERY_TIMEOUT_S) == 0, "not delivered in time"
        ((error, message),) = delivered
        return message if error is None else error

    def send_all(self, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> list[Record]:
        sent = []
        for k, v in records:
            message = self.send(topic, k, v)
            assert isinstance(message, Message), message
            sent.append((message.offset(), k, v))
        return sent


class Reader:
    """A confluent-kafka consumer that reads the partition from its start to its end (the last
    stable offset under read_committed), as often as asked."""

    def __init__(self, broker: CompactingBroker, topic: str, isolation: str = "read_uncommitted") -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "compaction-reader",  # never joined: partitions are assigned
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,
                "isolation.level": isolation,
            }
        )

    def read(self) -> list[Record]:
        self.consumer.unassign()
        self.consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        seen: list[Record] = []
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            for message in self.consumer.consume(500, 0.05):
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    return seen
                assert error is None, error
                seen.append((message.offset(), message.key(), message.value()))
        raise AssertionError(f"{self.topic}: no end of partition in {DELIVERY_TIMEOUT_S} s; read {seen}")

    def close(self) -> None:
        self.consumer.close()


def read_all(broker: CompactingBroker, topic: str, isolation: str = "read_uncommitted") -> list[Record]:
    reader = Reader(broker, topic, isolation)
    try:
        return reader.read()
    finally:
        reader.close()


def cleaned_view(
    broker: CompactingBroker, topic: str, expected: list[Record], produced: int, isolation: str = "read_uncommitted"
) -> list[Record]:
    """What a consumer reads once the cleaner is done: polls until it reads `expected`, or the
    same view smaller than the input for `STABLE_S`, or `CLEAN_TIMEOUT_S` passed; once at
    `expected`, reads again `SETTLE_S` later (later passes must keep it) and returns that."""
    reader = Reader(broker, topic, isolation)
    deadline = time.monotonic() + CLEAN_TIMEOUT_S
    last: list[Record] | None = None
    since = time.monotonic()
    try:
        while True:
            seen = reader.read()
            now = time.monotonic()
            if seen == expected:
                time.sleep(SETTLE_S)
                return reader.read()
            if seen != last:
                last, since = seen, now
            elif len(seen) < produced and now - since >= STABLE_S:
                return seen
            if now > deadline:
                return seen
            time.sleep(POLL_S)
    finally:
        reader.close()


def offsets(records: Iterable[Record]) -> list[int]:
    return [o for o, _, _ in records]


# (a) Overwrites: five keys written twelve times each (offsets 0-59), ten new keys (60-69), then
# the active segment (70-74) overwrites three of the five keys again.
OVERWRITES = (
    [(key("k", i % 5), value(i)) for i in range(60)]
    + [(key("u", i), value(i)) for i in range(60, 70)]
    + [(key("k", k), value(70 + i)) for i, k in enumerate([0, 1, 0, 2, 0])]
)


def produce_overwrites(broker: CompactingBroker, topic: str) -> tuple[list[Record], list[Record]]:
    """The overwrites, and what the cleaned log must show of them."""
    records = OneByOne(broker).send_all(topic, OVERWRITES)
    assert offsets(records) == list(range(len(OVERWRITES)))
    bases = segment_bases((batch_bytes(k, v) for _, k, v in records), SEGMENT_BYTES)
    assert bases == list(range(0, 71, 10))
    expected = compacted(records, cleanable_end=bases[-1])
    # Spelled out: the last of each key below 70, and all of 70-74 (k0000 three times).
    assert offsets(expected) == list(range(55, 75))
    return records, expected


def test_only_the_last_record_of_each_key_stays_below_the_active_segment(compacting: CompactingBroker) -> None:
    topic = create_topic(compacting, **COMPACTED)
    records, expected = produce_overwrites(compacting, topic)
    assert cleaned_view(compacting, topic, expected, len(records)) == expected


def test_a_consumer_reads_a_cleaned_log_again_and_again(compacting: CompactingBroker) -> None:
    """librdkafka takes a fetch answer without a record for a fetch size too small: it doubles
    its fetch size, and past 1 GiB it reports MSG_SIZE_TOO_LARGE to the application. A cleaned
    log must not keep segments holding only empty batches, which give such answers (Kafka drops
    a batch without a producer id once its records are gone, and merges emptied segments), or a
    consumer reading it again and again from the start (as state stores restore) meets the
    error. The records go as fast as they can, so passes run while segments roll."""
    topic = create_topic(compacting, **COMPACTED)
    records, expected = produce_overwrites(compacting, topic)
    assert cleaned_view(compacting, topic, expected, len(records)) == expected
    reader = Reader(compacting, topic)
    try:
        assert [reader.read() for _ in range(REREADS)] == [expected] * REREADS
    finally:
        reader.close()


def test_a_tombstone_stays_one_pass_then_goes_after_its_delete_horizon(compacting: CompactingBroker) -> None:
    topic = create_topic(compacting, **COMPACTED, **{"delete.retention.ms": "100"})
    # Four keys (0-19), then a segment (20-29) of new keys with tombstones for k0000 and k0001,
    # then five records in the active segment: exactly one pass sees the tombstones (after the
    # roll at 30), and it gives them their horizon.
    first = [(key("k", i % 4), value(i)) for i in range(20)] + [
        (key("k", 0), None) if i == 22 else (key("k", 1), None) if i == 27 else (key("u", i), value(i))
        for i in range(20, 30)
    ]
    first += [(key("w", i), value(i)) for i in range(30, 35)]
    producer = OneByOne(compacting)
    records = producer.send_all(topic, first)
    assert offsets(records) == list(range(35))
    bases = segment_bases((batch_bytes(k, v) for _, k, v in records), SEGMENT_BYTES)
    assert bases == [0, 10, 20, 30]
    expected = compacted(records, cleanable_end=30)
    assert offsets(expected) == [18, 19, *range(20, 35)]
    assert [o for o, _, v in expected if v is None] == [22, 27]
    assert cleaned_view(compacting, topic, expected, len(records)) == expected

    # Past the horizon, fifteen more records roll twice (at 40 and 50): the pass after that
    # drops the tombstones.
    time.sleep(0.2)
    records += producer.send_all(topic, [(key("x", i), value(i)) for i in range(35, 50)])
    bases = segment_bases((batch_bytes(k, v) for _, k, v in records), SEGMENT_BYTES)
    assert bases == [0, 10, 20, 30, 40]
    expected = compacted(records, cleanable_end=40, tombstones_gone=True)
    assert offsets(expected) == [18, 19, 20, 21, 23, 24, 25, 26, *range(28, 50)]
    assert cleaned_view(compacting, topic, expected, len(records)) == expected


def test_aborted_records_go_and_do_not_count_as_the_latest(compacting: CompactingBroker) -> None:
    topic = create_topic(compacting, **COMPACTED)
    txn = Producer(
        {"bootstrap.servers": compacting.bootstrap, "linger.ms": 0, "transactional.id": f"compaction-{topic}"}
    )
    txn.init_transactions(DELIVERY_TIMEOUT_S)
    a, b, c = key("a", 0), key("b", 0), key("c", 0)
    transactions = [([(a, b"a1"), (b, b"b1")], True), ([(a, b"a2"), (c, b"c2")], False), ([(b, b"b3")], True)]
    for records, commit in transactions:
        txn.begin_transaction()
        for k, v in records:  # each its own batch
            txn.produce(topic, key=k, value=v, partition=0)
            assert txn.flush(DELIVERY_TIMEOUT_S) == 0
        (txn.commit_transaction if commit else txn.abort_transaction)(DELIVERY_TIMEOUT_S)
    # Each transaction ends with its marker at the next offset: 0-1 (2), 3-4 (5), 6 (7). All of
    # it fits the first segment, which is still active: nothing is cleaned yet.
    committed = [(0, a, b"a1"), (1, b, b"b1"), (6, b, b"b3")]
    aborted = [(3, a, b"a2"), (4, c, b"c2")]
    assert read_all(compacting, topic, "read_uncommitted") == sorted(committed + aborted)
    assert read_all(compacting, topic, "read_committed") == committed

    # Twelve plain records (more than a segment) roll past the transactions. The active segment
    # starts somewhere among them; their keys are new, so all of them stay wherever it starts.
    tail = OneByOne(compacting).send_all(topic, [(key("u", i), value(i)) for i in range(8, 20)])
    assert offsets(tail) == list(range(8, 20))
    # a1 stays although a2 came after it (aborted), b1 goes (b3), c2 goes with its transaction.
    expected = compacted(committed + tail, cleanable_end=8)
    assert offsets(expected) == [0, 6, *range(8, 20)]
    produced = len(committed) + 2 + len(tail)
    assert cleaned_view(compacting, topic, expected, produced, "read_uncommitted") == expected
    assert read_all(compacting, topic, "read_committed") == expected


def no_key_message(topic: str) -> str:
    return f"Compacted topic cannot accept message without key in topic partition {topic}-0"


@pytest.mark.parametrize("policy", ["compact", "compact,delete", "delete"])
def test_a_record_without_a_key_is_refused_by_a_compacted_topic(compacting: CompactingBroker, policy: str) -> None:
    topic = create_topic(compacting, **{"cleanup.policy": policy})
    refused = policy != "delete"
    outcome = OneByOne(compacting).send(topic, None, b"no key")
    if not refused:
        assert isinstance(outcome, Message) and outcome.offset() == 0
        return
    assert isinstance(outcome, KafkaError)
    assert (outcome.code(), outcome.name()) == (KafkaError.INVALID_RECORD, "INVALID_RECORD")

    # Produce v9 names the record (the second one of the batch: the whole batch is refused).
    client = WireClient(compacting.port)
    now = int(time.time() * 1000)
    answer = produce(client, topic, build_batch([(now, b"k", b"keyed", []), (now, None, b"no key", [])]))
    assert answer.error_code == ErrorCode.invalid_record
    assert [(e.batch_index, e.batch_index_error_message) for e in answer.record_errors] == [(1, no_key_message(topic))]
    assert no_key_message(topic) in (answer.error_message or "")
    assert produce(client, topic, build_batch([(now, b"k", b"keyed", [])])).base_offset == 0, "nothing was appended"
    client.close()


def describe(broker: CompactingBroker, topic: str) -> dict[str, tuple[str | None, bool]]:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource("topic", topic)
    entries = admin.describe_configs([resource])[resource].result(DELIVERY_TIMEOUT_S)
    return {name: (entry.value, entry.is_default) for name, entry in entries.items()}


COMPACTION_DEFAULTS = {
    "cleanup.policy": ("delete", True),
    "min.cleanable.dirty.ratio": ("0.5", True),
    "min.compaction.lag.ms": ("0", True),
    "max.compaction.lag.ms": (str(2**63 - 1), True),
    "delete.retention.ms": ("86400000", True),
}


def test_compaction_configs_and_their_defaults_are_described(compacting: CompactingBroker) -> None:
    plain = describe(compacting, create_topic(compacting))
    assert {name: plain.get(name) for name in COMPACTION_DEFAULTS} == COMPACTION_DEFAULTS
    configs = {"cleanup.policy": "compact,delete", "min.cleanable.dirty.ratio": "0.25", "min.compaction.lag.ms": "10"}
    configs |= {"max.compaction.lag.ms": "60000", "delete.retention.ms": "100"}
    set_ = describe(compacting, create_topic(compacting, **configs))
    assert {name: set_.get(name) for name in configs} == {name: (v, False) for name, v in configs.items()}


@pytest.mark.parametrize(
    "configs",
    [
        {"cleanup.policy": "bogus"},
        {"min.cleanable.dirty.ratio": "1.5"},
        {"min.cleanable.dirty.ratio": "-0.1"},
        {"min.compaction.lag.ms": "-1"},
        {"max.compaction.lag.ms": "0"},
        {"delete.retention.ms": "-1"},
    ],
)
def test_bad_compaction_configs_are_refused(compacting: CompactingBroker, configs: dict[str, str]) -> None:
    client = WireClient(compacting.port)
    (answer,) = create_topics(client, new_topic(next(names), **configs))
    assert answer.error_code == ErrorCode.invalid_config, answer.error_message
    client.close()


def kafka_tool(tool: str, *arguments: str) -> str:
    command = ["java", *SHORT_JVM, "-cp", f"{KAFKA_LIBS}/*", f"org.apache.kafka.tools.{tool}", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


DYNAMIC_LINE = re.compile(r"^  (?P<name>[a-z.]+)=(?P<value>\S*) sensitive=(?P<sensitive>true|false) synonyms=")


def dynamic_configs(broker: CompactingBroker, topic: str) -> list[tuple[str, str, str]]:
    """kafka-configs --describe: the topic's own (dynamic) configs, as (name, value, sensitive)
    sorted by name. The synonyms after them are not compared (tidelog answers none)."""
    out = kafka_tool(
        "ConfigCommand", "--bootstrap-server", broker.bootstrap, "--describe", "--entity-type", "topics",
        "--entity-name", topic,
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == f"Dynamic configs for topic {topic} are:"
    matches = [DYNAMIC_LINE.match(line) for line in lines[1:]]
    assert all(matches), out
    return sorted((m["name"], m["value"], m["sensitive"]) for m in matches if m)


@pytest.mark.skipif(not kafka_available(), reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)")
def test_kafka_topics_creates_a_compacted_topic_and_kafka_configs_describes_and_alters_it(
    compacting: CompactingBroker,
) -> None:
    topic = next(names)
    server = ["--bootstrap-server", compacting.bootstrap]
    created = kafka_tool(
        "TopicCommand", *server, "--create", "--topic", topic, "--partitions", "1",
        "--config", "cleanup.policy=compact", "--config", "min.cleanable.dirty.ratio=0.1",
    )  # fmt: skip
    assert created.strip() == f"Created topic {topic}."
    assert dynamic_configs(compacting, topic) == [
        ("cleanup.policy", "compact", "false"),
        ("min.cleanable.dirty.ratio", "0.1", "false"),
    ]

    kafka_tool(
        "ConfigCommand", *server, "--alter", "--entity-type", "topics", "--entity-name", topic,
        "--add-config", "min.cleanable.dirty.ratio=0.2,delete.retention.ms=100",
        "--delete-config", "cleanup.policy",
    )  # fmt: skip
    # Read back with confluent-kafka (one JVM less).
    altered = describe(compacting, topic)
    assert {name: altered[name] for name in ("cleanup.policy", "delete.retention.ms", "min.cleanable.dirty.ratio")} == {
        "cleanup.policy": ("delete", True),
        "delete.retention.ms": ("100", False),
        "min.cleanable.dirty.ratio": ("0.2", False),
    }
