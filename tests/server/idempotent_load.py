"""Idempotent producers of every client under faults, and the check that follows.

Each writer sends values `<writer>:<partition>:<counter>` to explicit partitions (the Java
VerifiableProducer sends `<prefix>.<counter>` and picks partitions itself) and records what was
acknowledged at which offset, and any fatal error. `check` then reads every partition from the
start and counts acknowledged records lost, records stored twice, and records out of order.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

TICK_S = 0.02
FLUSH_TIMEOUT_S = 90
READ_TIMEOUT_S = 60
JAVA_PREFIX = 9


@dataclass
class Writer:
    name: str
    bootstrap: str
    topic: str
    partitions: int
    records_per_tick: int = 20
    acked: dict[tuple[int, str], int] = field(default_factory=dict)  # (partition, value) -> offset
    sent: int = 0
    fatal: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def value(self, counter: int) -> tuple[int, bytes]:
        partition = counter % self.partitions
        return partition, f"{self.name}:{partition}:{counter}".encode()

    def start(self) -> Writer:
        self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self.thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(FLUSH_TIMEOUT_S * 2)
        assert not self.thread.is_alive(), f"{self.name} did not finish"

    def run(self) -> None:
        raise NotImplementedError


class ConfluentWriter(Writer):
    def run(self) -> None:
        def on_error(error: KafkaError) -> None:
            if error.fatal():
                self.fatal.append(str(error))

        def on_delivery(error: Any, message: Any) -> None:
            if error is not None:
                self.failed.append(str(error))
            else:
                self.acked[(message.partition(), message.value().decode())] = message.offset()

        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 120_000,
                "reconnect.backoff.max.ms": 200,
                "error_cb": on_error,
            }
        )
        while not self.stop.is_set():
            for _ in range(self.records_per_tick):
                partition, value = self.value(self.sent)
                producer.produce(self.topic, value=value, partition=partition, on_delivery=on_delivery)
                self.sent += 1
            producer.poll(TICK_S)
        remaining = producer.flush(FLUSH_TIMEOUT_S)
        if remaining:
            self.failed.append(f"{remaining} records not delivered at the end")


class KafkaPythonWriter(Writer):
    def run(self) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError as KafkaPythonError

        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            retries=2**31 - 1,
            delivery_timeout_ms=120_000,
            request_timeout_ms=10_000,
            reconnect_backoff_max_ms=200,
            max_block_ms=60_000,
        )
        lock = threading.Lock()

        def sent_ok(partition: int, value: str, metadata: Any) -> None:
            with lock:
                self.acked[(partition, value)] = metadata.offset

        def sent_failed(error: Exception) -> None:
            self.failed.append(repr(error))

        while not self.stop.is_set():
            for _ in range(self.records_per_tick):
                partition, value = self.value(self.sent)
                try:
                    future = producer.send(self.topic, value=value, partition=partition)
                except KafkaPythonError as error:  # e.g. a fatal state of the producer
                    self.fatal.append(repr(error))
                    self.stop.set()
                    break
                future.add_callback(lambda m, p=partition, v=value.decode(): sent_ok(p, v, m))  # noqa: B008 (bound per record)
                future.add_errback(sent_failed)
                self.sent += 1
            time.sleep(TICK_S)
        producer.flush(FLUSH_TIMEOUT_S)
        producer.close(FLUSH_TIMEOUT_S)


class AiokafkaWriter(Writer):
    def run(self) -> None:
        asyncio.run(self.produce())

    async def produce(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            request_timeout_ms=60_000,
            retry_backoff_ms=100,
        )
        while True:  # the broker may be down (being restarted) when the writer starts
            try:
                await producer.start()
                break
            except Exception:
                await asyncio.sleep(0.2)
        pending: list[asyncio.Future[Any]] = []

        def done(future: asyncio.Future[Any], partition: int, value: str) -> None:
            if future.exception() is not None:
                self.failed.append(repr(future.exception()))
            else:
                self.acked[(partition, value)] = future.result().offset

        while not self.stop.is_set():
            for _ in range(self.records_per_tick):
                partition, value = self.value(self.sent)
                try:
                    future = await producer.send(self.topic, value=value, partition=partition)
                except Exception as error:
                    self.fatal.append(repr(error))
                    self.stop.set()
                    break
                future.add_done_callback(lambda f, p=partition, v=value.decode(): done(f, p, v))  # noqa: B008 (bound per record)
                pending.append(future)
                self.sent += 1
            await asyncio.sleep(TICK_S)
        await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), FLUSH_TIMEOUT_S)
        await producer.stop()


@dataclass
class JavaWriter(Writer):
    """Kafka's VerifiableProducer, idempotent; prints a JSON line per acknowledgement."""

    libs: Path = Path()
    workdir: Path = Path()
    rate: int = 500
    max_messages: int = 10_000

    def run(self) -> None:
        config = self.workdir / f"{self.name}.properties"
        command = [
            "java",
            "-cp",
            f"{self.libs}/*",
            "org.apache.kafka.tools.VerifiableProducer",
            "--bootstrap-server",
            self.bootstrap,
            "--topic",
            self.topic,
            "--max-messages",
            str(self.max_messages),
            "--throughput",
            str(self.rate),
            "--acks",
            "-1",
            "--value-prefix",
            str(JAVA_PREFIX),
            "--producer.config",
            str(config),
        ]
        # VerifiableProducer sets retries=0, which quietly turns idempotence off unless it is asked for.
        config.write_text("linger.ms=5\nreconnect.backoff.max.ms=200\nenable.idempotence=true\nretries=2147483647\n")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stderr: list[str] = []
        threading.Thread(target=lambda: stderr.extend(process.stderr or []), daemon=True).start()
        assert process.stdout is not None
        terminated = False
        for line in process.stdout:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if event["name"] == "producer_send_success":
                self.acked[(event["partition"], event["value"])] = event["offset"]
                self.sent += 1
            elif event["name"] == "producer_send_error":
                error = event.get("exception", "") + ": " + event.get("message", "")
                # A send still waiting (for metadata, through the faults) when our SIGTERM closes
                # the producer fails so; it was never acknowledged, so nothing is lost by it.
                if not (terminated and "Producer closed while send in progress" in error):
                    self.failed.append(error)
            if self.stop.is_set() and process.poll() is None and not terminated:
                process.terminate()  # closes the producer: it flushes what it has first
                terminated = True
        if process.wait(FLUSH_TIMEOUT_S) not in (0, -15, 143):  # SIGTERM at the end is expected
            self.failed.append(f"VerifiableProducer exited with {process.returncode}: {''.join(stderr)[-2000:]}")
        config.unlink()
        fatal_signs = ("OutOfOrderSequence", "ProducerFenced", "InvalidProducerEpoch", "FATAL")
        self.fatal += [line for line in stderr if any(sign in line for sign in fatal_signs)]


@dataclass
class Outcome:
    acked: int
    lost: list[str]
    duplicated: list[str]
    reordered: list[str]
    stored: int

    def summary(self) -> str:
        return (
            f"acked {self.acked}, stored {self.stored}, lost {len(self.lost)}, duplicated {len(self.duplicated)}, "
            f"reordered {len(self.reordered)}"
        )


def read_all(bootstrap: str, topic: str, partitions: int) -> dict[int, list[tuple[int, str]]]:
    """(offset, value) of every record in each partition, from the log start to the high watermark."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=READ_TIMEOUT_S)[1]
        for p in range(partitions)
    }
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    stored: dict[int, list[tuple[int, str]]] = defaultdict(list)
    deadline = time.monotonic() + READ_TIMEOUT_S
    while any((stored[p][-1][0] + 1 if stored[p] else 0) < ends[p] for p in range(partitions)):
        assert time.monotonic() < deadline, "could not read back to the high watermark"
        for message in consumer.consume(1000, 0.5):
            assert message.error() is None, message.error()
            stored[message.partition()].append((message.offset(), message.value().decode()))
    consumer.close()
    return stored


def writer_and_counter(value: str) -> tuple[str, int]:
    if ":" in value:
        name, _, counter = value.split(":")
        return name, int(counter)
    prefix, _, counter = value.partition(".")
    return f"java-{prefix}", int(counter)


def check(writers: list[Writer], stored: dict[int, list[tuple[int, str]]]) -> Outcome:
    at = {(partition, offset): value for partition, records in stored.items() for offset, value in records}
    counts = Counter((partition, value) for partition, records in stored.items() for _, value in records)
    values = Counter(value for _, value in counts.elements())
    duplicated = sorted(value for value, count in values.items() if count > 1)
    lost = [
        f"{partition}@{offset}={value}"
        for w in writers
        for (partition, value), offset in w.acked.items()
        if at.get((partition, offset)) != value
    ]
    reordered = []
    for partition, records in stored.items():
        last: dict[str, int] = {}
        for offset, value in records:
            name, counter = writer_and_counter(value)
            if counter <= last.get(name, -1):
                reordered.append(f"{partition}@{offset}={value} after counter {last[name]}")
            last[name] = counter
    acked = sum(len(w.acked) for w in writers)
    return Outcome(acked, lost, duplicated, reordered, sum(len(r) for r in stored.values()))


def assert_each_acknowledged_record_once(writers: list[Writer], outcome: Outcome) -> None:
    """No client error, every record acknowledged (Java's VerifiableProducer reports only its
    acknowledgements), and none lost, stored twice or out of order."""
    for writer in writers:
        assert not writer.fatal, (writer.name, writer.fatal[:3])
        assert not writer.failed, (writer.name, writer.failed[:3])
        assert len(writer.acked) > 100, (writer.name, len(writer.acked))
        if not isinstance(writer, JavaWriter):
            assert len(writer.acked) == writer.sent, (writer.name, writer.sent, len(writer.acked))
    assert not outcome.lost, outcome.lost[:5]
    assert not outcome.duplicated, outcome.duplicated[:5]
    assert not outcome.reordered, outcome.reordered[:5]
