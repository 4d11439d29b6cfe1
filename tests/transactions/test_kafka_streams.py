"""A Kafka Streams 4.4 application with processing.guarantee=exactly_once_v2 (transactions with
TV2, its offsets committed in them, repartition and changelog topics, read_committed) counting
words over a fixed input, SIGKILLed halfway and started again: every word's last count in the
output is exact, no count above it ever appears (a duplicate would push one past it), and each
word's counts only grow (an aborted transaction's output is never read)."""

from __future__ import annotations

import random
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.server.conftest import BrokerProcess, free_port

ROOT = Path(__file__).parents[2]
LIBS = ROOT / ".cache" / "kafka" / "libs"
APP = Path(__file__).parent / "java" / "EosWordCount.java"
pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or not any(LIBS.glob("kafka-streams-*.jar")),
    reason="needs Java and the Kafka jars with kafka-streams (bench/kafka/fetch.sh)",
)
WORDS = ("tide", "log", "kafka", "stream", "exactly", "once", "broker", "python")
LINES = 400
FEED_INTERVAL_S = 0.04  # 400 lines in about 16 s: the kill lands while input still comes
PARTITIONS = 2
TIMEOUT_S = 180


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    settings = {
        "transaction.state.log.num.partitions": "3",
        "offsets.topic.num.partitions": "3",
        "group.initial.rebalance.delay.ms": "0",
    }
    process = BrokerProcess(tmp_path / "data", free_port(), settings).start()
    admin = AdminClient({"bootstrap.servers": process.bootstrap})
    topics = [NewTopic(t, PARTITIONS, 1) for t in ("words-in", "words-out")]
    for future in admin.create_topics(topics).values():
        future.result(30)
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


def started(command: list[str]) -> tuple[subprocess.Popen[str], list[str]]:
    """The application, once it reports RUNNING; its output lines keep being collected."""
    app = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    running = threading.Event()

    def collect() -> None:
        assert app.stdout is not None
        for line in app.stdout:
            lines.append(line)
            if "-> RUNNING" in line:
                running.set()

    threading.Thread(target=collect, daemon=True).start()
    assert running.wait(TIMEOUT_S), "".join(lines)[-3000:]
    return app, lines


def latest_counts(consumer: Consumer, seen: dict[str, list[int]], budget_s: float) -> None:
    """Reads what is committed of the output for a while; every count of every word, in order."""
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is None or message.error():
            continue
        (count,) = struct.unpack(">q", message.value())
        seen.setdefault(message.key().decode(), []).append(count)


def test_exactly_once_v2_word_count_is_exact(broker: BrokerProcess, tmp_path: Path) -> None:
    rng = random.Random(11)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))) for _ in range(LINES)]
    expected = Counter(word for line in lines for word in line.split())

    def feed() -> None:  # the input keeps coming while the application runs and is killed
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        for i, line in enumerate(lines):
            producer.produce("words-in", key=str(i).encode(), value=line.encode())
            producer.poll(0)
            time.sleep(FEED_INTERVAL_S)
        producer.flush(30)

    feeder = threading.Thread(target=feed, daemon=True)
    command = ["java", "-cp", f"{LIBS}/*", str(APP), broker.bootstrap, "eos-count", "words-in", "words-out"]
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
    first, _ = started([*command, str(tmp_path / "state")])
    feeder.start()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while sum(counts[-1] for counts in seen.values()) < sum(expected.values()) // 4:
            assert first.poll() is None, "the Streams application stopped"
            assert time.monotonic() < deadline, f"no counts came: {seen}"
            latest_counts(consumer, seen, 0.5)
    finally:
        first.kill()  # SIGKILL: a transaction may be open, its offsets not committed
        first.wait(60)
    assert feeder.is_alive(), "the kill came after the input ended: make the feed slower"
    app, output = started([*command, str(tmp_path / "state")])
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while {w: counts[-1] for w, counts in seen.items()} != dict(expected):
            past = {w: c[-1] for w, c in seen.items() if c[-1] > expected[w]}
            assert not past, f"counts past the input's ({dict(expected)}): {past}"
            assert app.poll() is None, "the Streams application stopped"
            assert time.monotonic() < deadline, f"counts {seen} never reached {dict(expected)}"
            latest_counts(consumer, seen, 1.0)
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(60)
        consumer.close()
    for word, counts in seen.items():
        assert max(counts) == expected[word], f"{word}: a count past {expected[word]}: {counts}"
        assert counts == sorted(counts), f"{word}: counts went back: {counts}"
    assert not feeder.is_alive(), "".join(output)[-3000:]
