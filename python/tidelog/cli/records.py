"""`tidelog produce TOPIC` and `tidelog consume TOPIC`, in the spirit of kcat and `rpk topic
produce|consume`, over confluent-kafka against any Kafka-compatible cluster.

produce: one record per input line (stdin or --file), an optional key before a separator,
headers, a partition, acks, compression, the idempotent producer, or one transaction for the
whole input (`--transactional-id`). It answers, per partition, the offsets the records got.

consume: from the beginning, the end, an offset or a timestamp (or a group's committed
positions), read_committed or read_uncommitted, at most `-n` records, stopping at the end of the
partitions unless `--follow` (with `--group` it follows: the group decides what it reads). Each
record is printed with a kcat-style `-f` template, or as one JSON object a line (`--format json`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

import click
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as KafkaPartition

from tidelog.cli.admin import BOOTSTRAP, REQUEST_TIMEOUT_S, fail

# A produce waits this long for its last delivery reports before it calls the rest failed.
PRODUCE_FLUSH_TIMEOUT_S = 60.0
# consume: how long one poll waits; the end of the partitions is known from their high watermarks.
POLL_S = 0.5
DEFAULT_TEMPLATE = "%s\\n"
TEMPLATE_FIELDS = {
    "t": lambda m: m.topic(),
    "p": lambda m: str(m.partition()),
    "o": lambda m: str(m.offset()),
    "k": lambda m: _text(m.key()),
    "s": lambda m: _text(m.value()),
    "S": lambda m: str(len(m.value() or b"")),
    "K": lambda m: str(len(m.key() or b"")),
    "T": lambda m: str(m.timestamp()[1]),
    "h": lambda m: ",".join(f"{k}={_text(v)}" for k, v in _headers(m)),
    "%": lambda m: "%",
}
ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def _headers(message: Message) -> list[tuple[str, Any]]:
    headers = message.headers()
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "backslashreplace")


def render(template: str, message: Message) -> str:
    """kcat's `-f`: %t topic, %p partition, %o offset, %k key, %s value, %S value size, %K key
    size, %T timestamp (ms), %h headers (k=v,...), %% a percent sign; \\n, \\t and \\\\ escapes."""
    out = []
    i = 0
    while i < len(template):
        char = template[i]
        if char in "%\\" and i + 1 < len(template):
            code = template[i + 1]
            table: dict[str, Any] = TEMPLATE_FIELDS if char == "%" else ESCAPES
            if code in table:
                value = table[code]
                out.append(value(message) if callable(value) else value)
                i += 2
                continue
        out.append(char)
        i += 1
    return "".join(out)


def as_json(message: Message) -> str:
    headers = [{"key": k, "value": _text(v)} for k, v in _headers(message)]
    return json.dumps(
        {
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "timestamp": message.timestamp()[1],
            "key": None if message.key() is None else _text(message.key()),
            "value": None if message.value() is None else _text(message.value()),
            "headers": headers,
        }
    )


def headers_of(pairs: tuple[str, ...]) -> list[tuple[str, str | bytes | None]]:
    out: list[tuple[str, str | bytes | None]] = []
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--header")
        out.append((key, value.encode()))
    return out


@click.command(help=__doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None)
@click.argument("topic")
@BOOTSTRAP
@click.option("--file", "source", type=click.File("r"), default="-", help="read lines from it (default: stdin)")
@click.option("--key-separator", "-K", default=None, help="split each line into key and value at its first SEP")
@click.option("--header", "-H", "header_pairs", multiple=True, metavar="KEY=VALUE", help="a header (repeatable)")
@click.option("--partition", "-p", type=int, default=None, help="write to this partition (default: by key)")
@click.option("--acks", type=click.Choice(["0", "1", "all"]), default="all", show_default=True)
@click.option(
    "--compression", type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]), default="none", show_default=True
)
@click.option("--idempotent", is_flag=True, help="the idempotent producer (acks=all, sequence numbers)")
@click.option("--transactional-id", default=None, help="write the whole input in one transaction")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def produce(
    topic: str,
    bootstrap: str,
    source: TextIO,
    key_separator: str | None,
    header_pairs: tuple[str, ...],
    partition: int | None,
    acks: str,
    compression: str,
    idempotent: bool,
    transactional_id: str | None,
    output: str,
) -> None:
    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": acks,
        "compression.type": compression,
        "enable.idempotence": idempotent or transactional_id is not None,
        "linger.ms": 5,
    }
    if transactional_id is not None:
        settings["transactional.id"] = transactional_id
    producer = Producer(settings)
    headers = headers_of(header_pairs)
    offsets: dict[int, list[int]] = {}
    errors: list[KafkaError] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(error)
        else:
            index, offset = message.partition(), message.offset()
            assert index is not None and offset is not None
            offsets.setdefault(index, []).append(offset)

    try:
        if transactional_id is not None:
            producer.init_transactions(REQUEST_TIMEOUT_S)
            producer.begin_transaction()
        for line in source:
            text = line.rstrip("\n")
            key: str | None = None
            if key_separator is not None and key_separator in text:
                key, text = text.split(key_separator, 1)
            while True:
                try:
                    if partition is None:
                        producer.produce(topic, value=text, key=key, headers=headers, on_delivery=delivered)
                    else:
                        producer.produce(
                            topic, value=text, key=key, headers=headers, on_delivery=delivered, partition=partition
                        )
                    break
                except BufferError:  # the client's queue is full: let it send
                    producer.poll(0.1)
            producer.poll(0)
        left = producer.flush(PRODUCE_FLUSH_TIMEOUT_S)
        if transactional_id is not None:
            if errors or left:  # a refused record: the whole input is aborted, not half committed
                producer.abort_transaction(REQUEST_TIMEOUT_S)
            else:
                producer.commit_transaction(REQUEST_TIMEOUT_S)
    except KafkaException as error:
        if transactional_id is not None:
            try:
                producer.abort_transaction(REQUEST_TIMEOUT_S)
            except KafkaException:
                pass  # a fatal error: the coordinator aborts it at its timeout
        fail(error)
    if errors:
        fail(errors[0])
    if left:
        fail(f"{left} record(s) not acknowledged within {PRODUCE_FLUSH_TIMEOUT_S:.0f} s")
    rows = [
        {"partition": p, "records": len(o), "first offset": min(o), "last offset": max(o)}
        for p, o in sorted(offsets.items())
    ]
    if output == "json":
        click.echo(json.dumps(rows))
    else:
        total = sum(len(o) for o in offsets.values())
        for row in rows:
            click.echo(
                f"{topic}-{row['partition']}: {row['records']} record(s) at offsets "
                f"{row['first offset']}..{row['last offset']}"
            )
        click.echo(f"produced {total} record(s) to {topic}", err=True)


def start_position(consumer: Consumer, topic: str, index: int, start: str) -> int:
    """The offset `--from` names for one partition."""
    if start == "beginning":
        return OFFSET_BEGINNING
    if start == "end":
        return OFFSET_END
    kind, _, value = start.partition(":")
    if kind == "offset" and value.lstrip("-").isdigit():
        return int(value)
    if kind == "timestamp" and value.isdigit():
        [found] = consumer.offsets_for_times([KafkaPartition(topic, index, int(value))], REQUEST_TIMEOUT_S)
        return found.offset if found.offset >= 0 else OFFSET_END
    raise click.BadParameter(f"{start!r}: beginning, end, offset:N or timestamp:MS", param_hint="--from")


def records(consumer: Consumer, ends: dict[int, int] | None, count: int | None, follow: bool) -> Iterator[Message]:
    """Messages until `count`, or (without `follow`) until every partition reached its end."""
    seen = 0
    positions: dict[int, int] = {}
    while count is None or seen < count:
        if not follow and ends is not None and all(positions.get(p, -1) + 1 >= end for p, end in ends.items()):
            return
        message = consumer.poll(POLL_S)
        if message is None:
            continue
        error = message.error()
        index, offset = message.partition(), message.offset()
        assert index is not None and offset is not None
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                positions[index] = max(positions.get(index, -1), offset - 1)
                continue
            fail(error)
        positions[index] = offset
        seen += 1
        yield message


@click.command(help=__doc__.split("\n\n")[2].replace("\n", " ") if __doc__ else None)
@click.argument("topic")
@BOOTSTRAP
@click.option("--from", "start", default="beginning", show_default=True, help="beginning, end, offset:N, timestamp:MS")
@click.option("--group", "-g", default=None, help="consume as this group (from its committed positions; commits)")
@click.option(
    "--isolation",
    type=click.Choice(["read_uncommitted", "read_committed"]),
    default="read_uncommitted",
    show_default=True,
)
@click.option("--partition", "-p", "partitions", type=int, multiple=True, help="only this partition (repeatable)")
@click.option("-n", "--count", type=int, default=None, help="stop after this many records")
@click.option("--follow", is_flag=True, help="keep waiting for new records at the end")
@click.option("-f", "template", default=None, help="kcat-style template: %t %p %o %k %s %S %K %T %h, \\n \\t")
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def consume(
    topic: str,
    bootstrap: str,
    start: str,
    group: str | None,
    isolation: str,
    partitions: tuple[int, ...],
    count: int | None,
    follow: bool,
    template: str | None,
    output: str,
) -> None:
    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group or f"tidelog-consume-{time.time_ns()}",
        "enable.auto.commit": group is not None,
        "isolation.level": isolation,
        "auto.offset.reset": "latest" if start == "end" else "earliest",
        "enable.partition.eof": True,
    }
    consumer = Consumer(settings)
    try:
        metadata = consumer.list_topics(topic, timeout=REQUEST_TIMEOUT_S)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            fail(found.error if found is not None else f"unknown topic {topic}")
        chosen = sorted(partitions) if partitions else sorted(found.partitions)
        ends: dict[int, int] | None = None
        if group is not None and not partitions:
            consumer.subscribe([topic])
        else:
            assignment = [KafkaPartition(topic, p, start_position(consumer, topic, p, start)) for p in chosen]
            consumer.assign(assignment)
            ends = {}
            for p in chosen:
                _, high = consumer.get_watermark_offsets(KafkaPartition(topic, p), timeout=REQUEST_TIMEOUT_S)
                ends[p] = high
            if start == "end":
                ends = {p: 0 for p in chosen}
        line_template = template if template is not None else DEFAULT_TEMPLATE
        for message in records(consumer, ends, count, follow):
            if output == "json":
                sys.stdout.write(as_json(message) + "\n")
            else:
                sys.stdout.write(render(line_template, message))
        sys.stdout.flush()
    except KafkaException as error:
        fail(error)
    finally:
        consumer.close()
