"""`tidelog transactions list|describe|describe-producers|find-hanging|abort`: Kafka's
`kafka-transactions.sh` (KIP-664) for any Kafka-compatible cluster.

confluent-kafka has no transaction admin calls, so these requests go over the wire with kio's
message classes, each to the broker Kafka's admin client would ask: ListTransactions to every
broker, DescribeTransactions to the id's transaction coordinator (FindCoordinator), and
DescribeProducers and WriteTxnMarkers to the partition's leader (from confluent-kafka's
metadata).
"""

from __future__ import annotations

import datetime
import io
import json
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import click
import kio.index
import kio.serial
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from kio.schema.errors import ErrorCode
from kio.serial import readers

from tidelog.cli.admin import REQUEST_TIMEOUT_S, Context, cluster_verb, fail

# The request versions used (every Kafka 4.x broker, and tidelog, answers them).
FIND_COORDINATOR = (10, 4)
LIST_TRANSACTIONS = (66, 1)
DESCRIBE_TRANSACTIONS = (65, 0)
DESCRIBE_PRODUCERS = (61, 0)
WRITE_TXN_MARKERS = (27, 1)
TRANSACTION_COORDINATOR_KEY = 1
# find-hanging: Kafka's default bound, transaction.max.timeout.ms (15 minutes).
DEFAULT_MAX_TRANSACTION_TIMEOUT_MIN = 15
CLIENT_ID = b"tidelog-cli"


class Wire:
    """One blocking connection to one broker; requests one at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=REQUEST_TIMEOUT_S)
        self.correlation = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, api: tuple[int, int], body: Any, parse: Callable[[bytes, int], Any] | None = None) -> Any:
        """Sends `body` and decodes the answer with kio (or `parse`, from the body's start)."""
        api_key, version = api
        cls = kio.index.load_request_schema(api_key, version)
        out = io.BytesIO()
        kio.serial.entity_writer(cls)(out, body)
        self.correlation += 1
        header = struct.pack(">hhih", api_key, version, self.correlation, len(CLIENT_ID)) + CLIENT_ID
        if cls.__flexible__:
            header += b"\x00"  # no tagged fields
        message = header + out.getvalue()
        self.sock.sendall(struct.pack(">i", len(message)) + message)
        (size,) = struct.unpack(">i", self._read(4))
        frame = self._read(size)
        response_cls = kio.index.load_response_schema(api_key, version)
        body_at = 5 if response_cls.__flexible__ else 4  # correlation id, then the tagged fields
        if parse is not None:
            return parse(frame, body_at)
        response, _ = kio.serial.entity_reader(response_cls)(frame, body_at)
        return response

    def _read(self, count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                fail("the broker closed the connection")
            data += chunk
        return bytes(data)


class Reader:
    """Reads a response body field by field (kio's readers answer a value and its size)."""

    def __init__(self, frame: bytes, at: int) -> None:
        self.frame, self.at = frame, at

    def read(self, reader: Callable[[bytes, int], tuple[Any, int]]) -> Any:
        value, size = reader(self.frame, self.at)
        self.at += size
        return value

    def length(self) -> int:
        """A compact array's length (a null array counts as empty)."""
        return int(self.read(readers.read_compact_array_length) or 0)

    def skip_tagged_fields(self) -> None:
        for _ in range(self.read(readers.read_unsigned_varint)):
            self.read(readers.read_unsigned_varint)  # the tag
            self.at += self.read(readers.read_unsigned_varint)  # its size, then its bytes


def parse_transaction_states(frame: bytes, at: int) -> list[dict[str, Any]]:
    """DescribeTransactions v0's answer, read field by field: kio refuses the -1 Kafka sends as
    the start time of a transactional id with no transaction (Empty), in a field it types as
    a timestamp that cannot be null."""
    body = Reader(frame, at)
    body.read(readers.read_int32)  # throttle time
    states = []
    for _ in range(body.length()):
        state: dict[str, Any] = {
            "error_code": body.read(readers.read_int16),
            "transactional_id": body.read(readers.read_compact_string),
            "transaction_state": body.read(readers.read_compact_string),
            "timeout_ms": body.read(readers.read_int32),
            "start_ms": body.read(readers.read_int64),
            "producer_id": body.read(readers.read_int64),
            "producer_epoch": body.read(readers.read_int16),
        }
        partitions = []
        for _ in range(body.length()):
            topic = body.read(readers.read_compact_string)
            partitions += [f"{topic}-{body.read(readers.read_int32)}" for _ in range(body.length())]
            body.skip_tagged_fields()
        state["partitions"] = sorted(partitions)
        body.skip_tagged_fields()
        states.append(state)
    return states


def schema(api: tuple[int, int], name: str = "") -> Any:
    """The request class of `api`, or one of its nested classes by name."""
    cls = kio.index.load_request_schema(*api)
    return getattr(sys.modules[cls.__module__], name) if name else cls


def check(error_code: int, what: str) -> None:
    if error_code != ErrorCode.none:
        click.echo(f"tidelog: {ErrorCode(error_code).name.upper()}: {what}", err=True)
        raise SystemExit(1)


class Cluster:
    """The brokers and partition leaders, from confluent-kafka's metadata."""

    def __init__(self, bootstrap: str) -> None:
        try:
            self.metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=REQUEST_TIMEOUT_S)
        except KafkaException as error:
            fail(error)

    def brokers(self) -> dict[int, tuple[str, int]]:
        return {b.id: (b.host or "", b.port) for b in self.metadata.brokers.values()}

    def leader(self, topic: str, partition: int) -> Wire:
        found = self.metadata.topics.get(topic)
        if found is None or found.error is not None or partition not in found.partitions:
            click.echo(f"tidelog: UNKNOWN_TOPIC_OR_PARTITION: {topic}-{partition}", err=True)
            raise SystemExit(1)
        return Wire(*self.brokers()[found.partitions[partition].leader])

    def coordinator(self, transactional_id: str) -> Wire:
        host, port = next(iter(self.brokers().values()))
        wire = Wire(host, port)
        try:
            body = schema(FIND_COORDINATOR)(key_type=TRANSACTION_COORDINATOR_KEY, coordinator_keys=(transactional_id,))
            [found] = wire.request(FIND_COORDINATOR, body).coordinators
        finally:
            wire.close()
        check(found.error_code, f"no transaction coordinator for {transactional_id!r}: {found.error_message}")
        return Wire(found.host, found.port)


def producers_of(cluster: Cluster, topic: str, partition: int) -> list[Any]:
    wire = cluster.leader(topic, partition)
    try:
        topic_cls = schema(DESCRIBE_PRODUCERS, "TopicRequest")
        body = schema(DESCRIBE_PRODUCERS)(topics=(topic_cls(name=topic, partition_indexes=(partition,)),))
        [answer] = wire.request(DESCRIBE_PRODUCERS, body).topics[0].partitions
    finally:
        wire.close()
    check(answer.error_code, f"{topic}-{partition}: {answer.error_message}")
    return list(answer.active_producers)


def listed(cluster: Cluster, states: tuple[str, ...] = (), producer_ids: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    rows = []
    for broker_id, (host, port) in sorted(cluster.brokers().items()):
        wire = Wire(host, port)
        try:
            body = schema(LIST_TRANSACTIONS)(state_filters=states, producer_id_filters=producer_ids, duration_filter=-1)
            answer = wire.request(LIST_TRANSACTIONS, body)
        finally:
            wire.close()
        check(answer.error_code, f"ListTransactions on broker {broker_id}")
        rows += [
            {
                "transactional id": t.transactional_id,
                "producer id": t.producer_id,
                "state": t.transaction_state,
                "coordinator": broker_id,
            }
            for t in answer.transaction_states
        ]
    return sorted(rows, key=lambda r: r["transactional id"])


def described(cluster: Cluster, transactional_id: str) -> dict[str, Any]:
    wire = cluster.coordinator(transactional_id)
    try:
        body = schema(DESCRIBE_TRANSACTIONS)(transactional_ids=(transactional_id,))
        [state] = wire.request(DESCRIBE_TRANSACTIONS, body, parse_transaction_states)
    finally:
        wire.close()
    check(state["error_code"], f"transactional id {transactional_id!r}")
    started = state["start_ms"]
    return {
        "transactional id": state["transactional_id"],
        "producer id": state["producer_id"],
        "producer epoch": state["producer_epoch"],
        "state": state["transaction_state"],
        "timeout ms": state["timeout_ms"],
        "start time": None
        if started < 0
        else datetime.datetime.fromtimestamp(started / 1000, datetime.UTC).isoformat(),
        "partitions": state["partitions"],
    }


transactions = cluster_verb(
    "transactions", "List, describe, find hanging and abort transactions (Kafka's kafka-transactions.sh)."
)

pass_context = click.make_pass_decorator(Context)


@transactions.command("list")
@click.option("--state", "states", multiple=True, help="only in this state, e.g. Ongoing (repeatable)")
@click.option("--producer-id", "producer_ids", type=int, multiple=True, help="only this producer id (repeatable)")
@pass_context
def transactions_list(context: Context, states: tuple[str, ...], producer_ids: tuple[int, ...]) -> None:
    """Every transactional id the cluster's coordinators know, with its state."""
    rows = listed(Cluster(context.bootstrap), states, producer_ids)
    context.show(rows, columns=["transactional id", "producer id", "state", "coordinator"])


@transactions.command("describe")
@click.argument("transactional_id")
@pass_context
def transactions_describe(context: Context, transactional_id: str) -> None:
    """A transactional id's producer id and epoch, state, timeout, start and partitions."""
    row = described(Cluster(context.bootstrap), transactional_id)
    if context.output == "json":
        click.echo(json.dumps(row, indent=2))
        return
    context.show([{**row, "partitions": ", ".join(row["partitions"])}])


@transactions.command("describe-producers")
@click.option("--topic", "-t", required=True)
@click.option("--partition", "-p", type=int, required=True)
@pass_context
def transactions_describe_producers(context: Context, topic: str, partition: int) -> None:
    """The producers a partition remembers: epoch, last sequence and timestamp, open transaction."""
    rows = [
        {
            "producer id": p.producer_id,
            "epoch": p.producer_epoch,
            "last sequence": p.last_sequence,
            "last timestamp": p.last_timestamp,
            "coordinator epoch": p.coordinator_epoch,
            "transaction start offset": p.current_txn_start_offset,
        }
        for p in producers_of(Cluster(context.bootstrap), topic, partition)
    ]
    context.show(rows)


@transactions.command("find-hanging")
@click.option("--topic", "-t", "topics", multiple=True, help="only this topic (repeatable; default: all)")
@click.option(
    "--max-transaction-timeout",
    type=int,
    default=DEFAULT_MAX_TRANSACTION_TIMEOUT_MIN,
    show_default=True,
    help="minutes: a transaction open longer is a candidate",
)
@pass_context
def transactions_find_hanging(context: Context, topics: tuple[str, ...], max_transaction_timeout: int) -> None:
    """Open transactions in partitions that no coordinator will ever finish: older than the
    bound, and whose transactional id is gone, has another producer id, or does not hold the
    partition (Kafka's FindHangingTransactions)."""
    cluster = Cluster(context.bootstrap)
    now_ms = time.time() * 1000
    chosen = topics or tuple(t for t in cluster.metadata.topics if not t.startswith("__"))
    hanging = []
    for topic in sorted(chosen):
        found = cluster.metadata.topics.get(topic)
        if found is None:
            continue
        for partition in sorted(found.partitions):
            for producer in producers_of(cluster, topic, partition):
                start = producer.current_txn_start_offset
                if start < 0 or now_ms - producer.last_timestamp < max_transaction_timeout * 60_000:
                    continue
                owners = listed(cluster, producer_ids=(producer.producer_id,))
                live = [
                    o
                    for o in owners
                    if f"{topic}-{partition}" in described(cluster, o["transactional id"])["partitions"]
                ]
                if not live:
                    hanging.append(
                        {
                            "topic": topic,
                            "partition": partition,
                            "producer id": producer.producer_id,
                            "epoch": producer.producer_epoch,
                            "coordinator epoch": producer.coordinator_epoch,
                            "start offset": start,
                            "last timestamp": producer.last_timestamp,
                        }
                    )
    context.show(hanging, columns=["topic", "partition", "producer id", "epoch", "coordinator epoch", "start offset"])


@transactions.command("abort")
@click.option("--topic", "-t", required=True)
@click.option("--partition", "-p", type=int, required=True)
@click.option("--start-offset", type=int, required=True, help="the first offset of the transaction to abort")
@pass_context
def transactions_abort(context: Context, topic: str, partition: int, start_offset: int) -> None:
    """Abort the open transaction that starts at --start-offset in one partition: an ABORT marker
    written to it with the producer's epoch and coordinator epoch (as `kafka-transactions abort`)."""
    cluster = Cluster(context.bootstrap)
    matching = [p for p in producers_of(cluster, topic, partition) if p.current_txn_start_offset == start_offset]
    if not matching:
        click.echo(f"tidelog: no open transaction starts at offset {start_offset} in {topic}-{partition}", err=True)
        raise SystemExit(1)
    [producer] = matching
    topic_cls = schema(WRITE_TXN_MARKERS, "WritableTxnMarkerTopic")
    marker_cls = schema(WRITE_TXN_MARKERS, "WritableTxnMarker")
    marker = marker_cls(
        producer_id=producer.producer_id,
        producer_epoch=producer.producer_epoch,
        transaction_result=False,
        topics=(topic_cls(name=topic, partition_indexes=(partition,)),),
        coordinator_epoch=producer.coordinator_epoch,
    )
    wire = cluster.leader(topic, partition)
    try:
        answer = wire.request(WRITE_TXN_MARKERS, schema(WRITE_TXN_MARKERS)(markers=(marker,)))
    finally:
        wire.close()
    [result] = answer.markers[0].topics[0].partitions
    check(result.error_code, f"abort in {topic}-{partition}")
    context.show([{"topic": topic, "partition": partition, "producer id": producer.producer_id, "aborted": True}])
