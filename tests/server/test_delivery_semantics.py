"""At-most-once and at-least-once, proven with real client processes and real kills.

A consumer process (tests/server/clients/semantics_consumer.py) reads a one-partition topic in
chunks of CHUNK records; "processing" a record appends it to a file and fsyncs. It SIGKILLs
itself at record CRASH_AT; a second process in the same group then finishes the topic.

- At-most-once (commit the chunk, then process it): killed after the commit and before
  processing CRASH_AT, the records from CRASH_AT to the end of that chunk are skipped; nothing is
  ever processed twice.
- At-least-once (process the chunk, then commit it): killed after processing CRASH_AT and before
  the commit, the records from the last commit up to CRASH_AT are processed again; nothing is lost.
- The broker SIGKILLed and restarted between a commit and the next poll: the commit was durable,
  the consumer carries on from it, every record is processed exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.server.conftest import BrokerProcess, free_port, wait_until

ROOT = Path(__file__).parents[2]
SETTINGS = {"group.initial.rebalance.delay.ms": "0", "group.min.session.timeout.ms": "1000"}
RECORDS = 100
CHUNK = 10
CRASH_AT = 25  # in the chunk [20, 30)
TIMEOUT_S = 30


@pytest.fixture
def group_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path / "data", free_port(), dict(SETTINGS)).start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


def produce(broker: BrokerProcess, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(TIMEOUT_S)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(RECORDS):
        producer.produce(topic, value=b"value-%d" % i, partition=0)
    assert producer.flush(TIMEOUT_S) == 0


class Run:
    """One consumer process; its stdout events are collected."""

    def __init__(self, broker: BrokerProcess, lib: str, mode: str, topic: str, out: Path, *extra: str) -> None:
        command = [
            sys.executable,
            "-m",
            "tests.server.clients.semantics_consumer",
            lib,
            mode,
            broker.bootstrap,
            topic,
            f"group-{topic}",
            str(out),
            "--end",
            str(RECORDS),
            "--chunk",
            str(CHUNK),
            *extra,
        ]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.events: list[dict[str, object]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    def wait(self) -> int:
        try:
            return self.process.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def commits(self) -> list[object]:
        return [e["offset"] for e in self.events if e["event"] == "committed"]


def run_to_exit(broker: BrokerProcess, lib: str, mode: str, topic: str, out: Path, *extra: str) -> Run:
    """Runs a consumer to its end. kafka-python 3.0.12 can stall for good right after a rejoin
    when its process is starved of CPU (its debug log shows the SyncGroup answer received and the
    join never completing: no heartbeat, no fetch, the broker expires it), a client bug. Such a
    run did nothing (no commit, nothing processed), so it is as if it never started: it is
    started once more. A run that did anything and then hangs fails the test."""
    size_before = out.stat().st_size if out.exists() else 0
    run = Run(broker, lib, mode, topic, out, *extra)
    try:
        run.wait()
    except subprocess.TimeoutExpired:
        did_nothing = not run.events and (out.stat().st_size if out.exists() else 0) == size_before
        if lib != "kafka-python" or not did_nothing:
            raise
        print(f"kafka-python consumer stalled before doing anything; started again ({topic})")
        run = Run(broker, lib, mode, topic, out, *extra)
        run.wait()
    return run


def committed(broker: BrokerProcess, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"group-{topic}"})
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], TIMEOUT_S)
    finally:
        consumer.close()
    return int(tp.offset)


def processed(out: Path) -> list[int]:
    lines = out.read_text().splitlines()
    for line in lines:
        offset, value = line.split(" ")
        assert value == f"value-{offset}"
    return [int(line.split(" ")[0]) for line in lines]


def crash_and_resume(
    broker: BrokerProcess, lib: str, mode: str, topic: str, out: Path, *extra: str
) -> tuple[int, list[int]]:
    """Runs a consumer that kills itself at CRASH_AT, then one that finishes; returns the offset
    committed at the time of the kill and the offsets processed by both, in order."""
    produce(broker, topic)
    first = run_to_exit(broker, lib, mode, topic, out, "--crash-at", str(CRASH_AT), *extra)
    assert first.process.returncode == -signal.SIGKILL
    at_kill = committed(broker, topic)
    second = run_to_exit(broker, lib, mode, topic, out, *extra)
    assert second.process.returncode == 0 and second.events[-1] == {"event": "done"}
    assert committed(broker, topic) == RECORDS
    return at_kill, processed(out)


@pytest.mark.parametrize("lib", ["confluent", "kafka-python"])
def test_at_most_once_skips_and_never_duplicates(group_broker: BrokerProcess, tmp_path: Path, lib: str) -> None:
    at_kill, offsets = crash_and_resume(group_broker, lib, "at-most-once", f"amo-{lib}", tmp_path / "out")
    chunk_end = (CRASH_AT // CHUNK + 1) * CHUNK
    assert at_kill == chunk_end  # the chunk's commit was made (and durable) before the kill
    assert len(offsets) == len(set(offsets)), "a record was processed twice"
    assert sorted(set(range(RECORDS)) - set(offsets)) == list(range(CRASH_AT, chunk_end))
    assert offsets == sorted(offsets)


@pytest.mark.parametrize(
    ("lib", "mode"),
    [("confluent", "at-least-once"), ("kafka-python", "at-least-once"), ("confluent", "at-least-once-auto")],
)
def test_at_least_once_redelivers_and_never_loses(
    group_broker: BrokerProcess, tmp_path: Path, lib: str, mode: str
) -> None:
    extra = ("--work-ms", "10") if mode == "at-least-once-auto" else ()  # give auto-commit (every 50 ms) time to run
    at_kill, offsets = crash_and_resume(group_broker, lib, mode, f"alo-{lib}-{mode}", tmp_path / "out", *extra)
    if mode == "at-least-once":
        assert at_kill == CRASH_AT // CHUNK * CHUNK  # the last chunk committed before the kill
    else:
        assert 0 < at_kill <= CRASH_AT, at_kill  # auto-commit: at most what was stored, never CRASH_AT itself
    assert set(offsets) == set(range(RECORDS)), "a record was lost"
    repeated = sorted(o for o, n in Counter(offsets).items() if n > 1)
    assert repeated == list(range(at_kill, CRASH_AT + 1))  # exactly those processed after the last commit
    assert max(Counter(offsets).values()) == 2


@pytest.mark.parametrize("mode", ["at-most-once", "at-least-once"])
def test_broker_sigkill_between_commit_and_next_poll(group_broker: BrokerProcess, tmp_path: Path, mode: str) -> None:
    """The broker is SIGKILLed right after acknowledging a commit, before the consumer polls
    again, and restarted on the same data dir: the commit is there, the consumer (the same
    process) carries on from it, and every record is processed exactly once."""
    topic, out = f"broker-kill-{mode}", tmp_path / "out"
    produce(group_broker, topic)
    run = Run(group_broker, "confluent", mode, topic, out, "--pause-after-commits", "3")
    wait_until(lambda: {"event": "paused"} in run.events, TIMEOUT_S)
    acknowledged = run.commits()[-1]
    assert acknowledged == 3 * CHUNK
    group_broker.kill()
    group_broker.lines.clear()
    group_broker.start()
    assert committed(group_broker, topic) == acknowledged
    assert run.process.stdin is not None
    run.process.stdin.write("go\n")
    run.process.stdin.flush()
    assert run.wait() == 0
    assert processed(out) == list(range(RECORDS))
    assert committed(group_broker, topic) == RECORDS
