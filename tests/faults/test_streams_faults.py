"""A Kafka Streams 4.4 application with processing.guarantee=exactly_once_v2 (transactions with
TV2, its offsets committed in them, repartition and changelog topics, read_committed) counting
words while its input still comes, through two SIGKILLs of the application and two SIGKILLs of
the broker: every word's last count in the output is exact, no count above it ever appears (a
duplicate would push one past it), and each word's counts are read once each, growing by one
(an aborted transaction's output, sent again by its retry, would be read twice). Runs against
the broker --fault-broker names (tidelog by default)."""

from __future__ import annotations

import random
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.compat.conftest import KAFKA_LIBS
from tests.faults.brokers import FaultBroker

APP = Path(__file__).parents[1] / "transactions" / "java" / "EosWordCount.java"
pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or not any(KAFKA_LIBS.glob("kafka-streams-*.jar")),
    reason="needs Java and the Kafka jars with kafka-streams (bench/kafka/fetch.sh)",
)
WORDS = ("tide", "log", "kafka", "stream", "exactly", "once", "broker", "python")
LINES = 600
FEED_INTERVAL_S = 0.05
TAIL_LINES = 100  # held back until the last fault is done: every fault lands while input still comes
PARTITIONS = 2
FAULTS = ("kill app", "kill broker", "kill app", "kill broker")
FAULT_GAP_S = 8.0
# Streams commits every COMMIT_INTERVAL_MS (its EOS default is 100): a kill then aborts up to
# this much work, whose output the retry sends again, so an aborted read would show.
COMMIT_INTERVAL_MS = 1000
TIMEOUT_S = 240


class App:
    """The Streams application, started again (same application id and state directory) when gone."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.exits: list[int] = []

    def start(self) -> None:
        process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        running = threading.Event()

        def collect() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.lines.append(line)
                if "-> RUNNING" in line:
                    running.set()

        threading.Thread(target=collect, daemon=True).start()
        self.process = process
        assert running.wait(TIMEOUT_S), "".join(self.lines)[-3000:]

    def keep_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            self.exits.append(self.process.returncode)
            self.start()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: a transaction may be open, its offsets not committed
        self.process.wait(60)
        self.exits.append(self.process.returncode)
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def read_counts(consumer: Consumer, seen: dict[str, list[int]], budget_s: float) -> None:
    """Reads what is committed of the output for a while; every count of every word, in order."""
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        for message in consumer.consume(200, 0.2):
            if message.error():
                continue
            (count,) = struct.unpack(">q", message.value())
            seen.setdefault(message.key().decode(), []).append(count)


def test_exactly_once_v2_word_count_is_exact_through_app_and_broker_kills(
    fault_broker: FaultBroker, tmp_path: Path
) -> None:
    broker = fault_broker
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in ("words-in", "words-out")]).values():
        future.result(60)
    rng = random.Random(11)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))) for _ in range(LINES)]
    expected = Counter(word for line in lines for word in line.split())
    failed_sends: list[str] = []
    faults_done = threading.Event()

    def feed() -> None:  # the input keeps coming through every fault; idempotent, so never twice
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "enable.idempotence": True})

        def delivered(error: object, _message: object) -> None:
            if error is not None:
                failed_sends.append(str(error))

        for i, line in enumerate(lines):
            if i == LINES - TAIL_LINES:
                faults_done.wait(TIMEOUT_S)
            producer.produce("words-in", key=str(i).encode(), value=line.encode(), on_delivery=delivered)
            producer.poll(0)
            time.sleep(FEED_INTERVAL_S)
        assert producer.flush(120) == 0

    feeder = threading.Thread(target=feed, daemon=True)
    app = App(["java", "-cp", f"{KAFKA_LIBS}/*", str(APP), broker.bootstrap, "eos-count", "words-in", "words-out",
               str(tmp_path / "state"), str(COMMIT_INTERVAL_MS)])  # fmt: skip
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "count-reader",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition("words-out", p, 0) for p in range(PARTITIONS)])
    seen: dict[str, list[int]] = {}
    app.start()
    feeder.start()
    done: list[str] = []
    try:
        for fault in FAULTS:
            read_counts(consumer, seen, FAULT_GAP_S)
            app.keep_running()
            if fault == "kill app":
                app.kill()
            else:
                broker.kill()
                broker.start()
            done.append(fault)
        assert feeder.is_alive(), f"the input ended before the faults did ({done}): make the feed slower"
        faults_done.set()
        deadline = time.monotonic() + TIMEOUT_S
        while {w: counts[-1] for w, counts in seen.items()} != dict(expected) or feeder.is_alive():
            past = {w: c[-1] for w, c in seen.items() if c[-1] > expected[w]}
            assert not past, f"counts past the input's ({dict(expected)}): {past}"
            assert time.monotonic() < deadline, (
                f"counts { ({w: c[-1] for w, c in seen.items()}) } never reached {dict(expected)}"
            )
            app.keep_running()
            read_counts(consumer, seen, 1.0)
    finally:
        app.stop()
        consumer.close()
    assert not failed_sends, failed_sends
    for word, counts in seen.items():
        assert max(counts) == expected[word], f"{word}: a count past {expected[word]}: {counts}"
        assert counts == sorted(counts), f"{word}: counts went back: {counts}"
        # Each occurrence of a word adds one, and with no store cache each count is sent: read
        # at read_committed, a word's counts are 1, 2, ... once each. A count read twice is the
        # output of an aborted transaction (its retry sends the same count again) or a duplicate.
        repeated = sorted(c for c, n in Counter(counts).items() if n > 1)
        assert counts == list(range(1, expected[word] + 1)), f"{word}: counts read twice {repeated}: {counts}"
    print(f"\nStreams EOS v2 on {broker.name}: exact counts through {done}; application exits {app.exits}")
