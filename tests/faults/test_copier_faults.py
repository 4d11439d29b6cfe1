"""Exactly once under faults, Kafka's transactions_test.py design: `input` holds 100,000 numbered
records over 4 partitions; two transactional copiers (each its own transactional id, one
read_committed consumer group) copy it to `output`, aborting a share of their transactions and
rewinding to the committed offsets. Meanwhile copiers are SIGKILLed three times (and started
again with the same transactional id), the broker is SIGKILLed three times and restarted cleanly
twice. Afterwards:

- `output` read at read_committed is `input` exactly, as a multiset (no loss, no duplicate);
- a read_committed consumer that read `output` during the whole copy saw the same: it never saw
  a record of an aborted transaction (that would be a duplicate, as the copy is retried);
- after a quiet moment LATEST at read_committed equals LATEST at read_uncommitted on every
  partition (no hanging transaction).

The copiers are confluent-kafka (tests/faults/copier.py, a third of the transactions aborted)
or Kafka's own TransactionalMessageCopier (Java, group mode with the group-metadata API, random
aborts). Both run against the broker --fault-broker names (tidelog by default); the Java copy,
marked kafka_side, also runs on Apache Kafka 4.4 in the default run.

On Kafka 4.4 a run can end in a hanging transaction (the Java copy stalls: its consumers wait for
the committed offsets to become stable) or in duplicates (the confluent-kafka copy: the same
producer's next COMMIT covers the records left open): after a SIGKILL, Kafka's coordinator
completes a transaction without writing some of its markers, and says so in its log
(brokers.KAFKA_SKIPPED_MARKERS). Such a run is reported as an expected failure with those log
lines, as soon as they appear; any other failure on Kafka fails the test. On tidelog a skipped
marker fails it.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.compat.conftest import KAFKA_LIBS, kafka_available
from tests.faults.brokers import FaultBroker
from tests.read_back import read_to_end
from tests.server.conftest import wait_until

COPIER = Path(__file__).parent / "copier.py"
PARTITIONS = 4
RECORDS = 100_000
COPIERS = 2
GROUP = "copiers"
# Every fault happens while the copy runs, one every FAULT_GAP_S (seeded), in a seeded order.
FAULTS = ["kill copier"] * 3 + ["kill broker"] * 3 + ["restart broker"] * 2
FAULT_GAP_S = (2.0, 4.0)
SEED = 12
COPY_DEADLINE_S = 420
QUIET_S = 30
MARKER_CHECK_S = 5.0  # how often the broker's log is searched for skipped transaction markers
WATCHDOG_EXIT = 4  # copier.py's exit status when librdkafka outlived its own timeout


def copier_command(kind: str, bootstrap: str, index: int) -> list[str]:
    if kind == "confluent-kafka":
        return [sys.executable, str(COPIER), bootstrap, f"copier-{index}", GROUP]
    return [
        "java",
        "-cp",
        str(KAFKA_LIBS / "*"),
        "org.apache.kafka.tools.TransactionalMessageCopier",
        "--broker-list",
        bootstrap,
        "--input-topic",
        "input",
        "--input-partition",
        "0",  # ignored in group mode
        "--output-topic",
        "output",
        "--transactional-id",
        f"copier-{index}",
        "--consumer-group",
        GROUP,
        "--group-mode",
        "--use-group-metadata",
        "--enable-random-aborts",
        "--transaction-size",
        "200",
        "--transaction-timeout",
        "10000",
    ]


@dataclass
class Copiers:
    """The copier processes, started again (same transactional id) whenever one is gone."""

    command: Callable[[int], list[str]]
    log: Path
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    exits: Counter[int] = field(default_factory=Counter)

    def keep_running(self) -> None:
        with self.log.open("ab") as log:
            for index in range(COPIERS):
                process = self.processes.get(index)
                if process is None or process.poll() is not None:
                    if process is not None:
                        self.exits[process.returncode] += 1
                    self.processes[index] = subprocess.Popen(self.command(index), stdout=subprocess.DEVNULL, stderr=log)

    def kill_one(self, rng: random.Random) -> None:
        self.processes[rng.randrange(COPIERS)].kill()

    def dump_stacks(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGUSR1 if process.args[0] == sys.executable else signal.SIGQUIT)

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait(30)


class ConcurrentReader:
    """A read_committed consumer of `output` for the whole copy, through every broker fault."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.values: Counter[bytes] = Counter()
        self.positions: dict[int, int] = {}
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "concurrent-reader",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        consumer.assign([TopicPartition("output", p, 0) for p in range(PARTITIONS)])
        while not self._stop.is_set():
            for message in consumer.consume(500, 0.2):
                if message.error():
                    self.errors[message.error().name()] += 1
                    continue
                self.values[message.value()] += 1
                self.positions[message.partition()] = message.offset() + 1
        consumer.close()

    def finish(self, timeout_s: float = 60) -> None:
        """Read on until every input record was seen (or the time is up), then stop."""
        deadline = time.monotonic() + timeout_s
        while sum(self.values.values()) < RECORDS and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1)  # a duplicate still in flight arrives too
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def read_output(
    bootstrap: str, isolation: str = "read_committed", strict: bool = True
) -> tuple[Counter[bytes], dict[int, int]]:
    """Every value of `output` at `isolation`, read to the end, and the end offset of each partition."""
    read = read_to_end(bootstrap, "output", PARTITIONS, isolation, strict=strict)
    return read.counts(), read.ends


def seed_input(bootstrap: str) -> Counter[bytes]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in ("input", "output")]).values():
        future.result(60)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    for i in range(RECORDS):
        producer.produce("input", value=f"n-{i}".encode(), partition=i % PARTITIONS)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return Counter(f"n-{i}".encode() for i in range(RECORDS))


def copy_through_faults(broker: FaultBroker, kind: str) -> None:
    try:
        copy_and_check(broker, kind)
    except AssertionError:
        skipped_markers_are_known(broker)
        raise


def skipped_markers_are_known(broker: FaultBroker) -> None:
    """A transaction the broker completed without writing all its markers leaves records open
    (the copy stalls at the last stable offset) or lets the producer's next COMMIT cover them
    (duplicates). On Kafka 4.4 that is its known behaviour after a single-node SIGKILL (see
    brokers.KAFKA_SKIPPED_MARKERS): the run is an expected failure, with the log lines as its
    reason. On tidelog it is a failure of ours."""
    skipped = broker.skipped_markers()
    if not skipped:
        return
    evidence = "\n".join(skipped[:5])
    if broker.name == "kafka":
        pytest.xfail(f"Kafka completed a transaction without some of its markers:\n{evidence}")
    raise AssertionError(f"{broker.name} completed a transaction without some of its markers:\n{evidence}")


def copy_and_check(broker: FaultBroker, kind: str) -> None:
    rng = random.Random(SEED)
    expected = seed_input(broker.bootstrap)
    reader = ConcurrentReader(broker.bootstrap)
    log = broker.data_dir.parent / "copiers.log"
    copiers = Copiers(lambda index: copier_command(kind, broker.bootstrap, index), log)
    faults = FAULTS[:]
    rng.shuffle(faults)
    done: list[str] = []
    started = time.monotonic()
    try:
        copiers.keep_running()
        deadline = started + COPY_DEADLINE_S
        next_fault = time.monotonic() + rng.uniform(*FAULT_GAP_S)
        next_marker_check = time.monotonic()
        while True:
            copiers.keep_running()
            if faults and time.monotonic() >= next_fault:
                fault = faults.pop(0)
                if fault == "kill copier":
                    copiers.kill_one(rng)
                elif fault == "kill broker":
                    broker.kill()
                    broker.start()
                else:
                    broker.stop()
                    broker.start()
                done.append(f"{fault} at {time.monotonic() - started:.0f}s")
                next_fault = time.monotonic() + rng.uniform(*FAULT_GAP_S)
                continue
            if not faults and sum(reader.values.values()) >= RECORDS:
                values, _ = read_output(broker.bootstrap)
                if sum(values.values()) >= RECORDS:
                    break
            if time.monotonic() >= next_marker_check:
                skipped_markers_are_known(broker)  # no need to wait out the deadline of a stalled copy
                next_marker_check = time.monotonic() + MARKER_CHECK_S
            if time.monotonic() >= deadline:
                copiers.dump_stacks()
                time.sleep(1)
                values, committed = read_output(broker.bootstrap, strict=False)
                _, uncommitted = read_output(broker.bootstrap, "read_uncommitted", strict=False)
                raise AssertionError(
                    f"not copied in {COPY_DEADLINE_S}s after faults {done}: {sum(values.values())} of {RECORDS} "
                    f"committed; ends read_committed {committed}, read_uncommitted {uncommitted}; copier exits "
                    f"{dict(copiers.exits)}; copier log {copiers.log}; broker log:\n{broker.log_tail()}"
                )
            time.sleep(0.5)
        assert not faults, f"the copy ended before the faults did: only {done}"
    finally:
        copiers.stop()
        if sys.exc_info()[0] is not None:
            reader.stop()  # no consumer left retrying a broker the test stops
    copied_s = time.monotonic() - started
    values, _ = read_output(broker.bootstrap)
    assert values == expected, (
        f"lost {sum((expected - values).values())}, duplicated {sum((values - expected).values())} "
        f"after {done}; copier exits {dict(copiers.exits)}"
    )
    reader.finish()
    assert reader.values == expected, (
        f"the concurrent read_committed reader lost {sum((expected - reader.values).values())} and saw "
        f"{sum((reader.values - expected).values())} extra (aborted or duplicated) records; "
        f"errors {dict(reader.errors)}"
    )

    def no_hanging_transaction() -> bool:
        _, committed = read_output(broker.bootstrap)
        _, uncommitted = read_output(broker.bootstrap, "read_uncommitted")
        return committed == uncommitted

    wait_until(no_hanging_transaction, timeout_s=QUIET_S, interval_s=1)
    print(
        f"\n{kind} copiers on {broker.name}: {RECORDS} records copied exactly once in {copied_s:.0f}s through "
        f"{done}; copier exits {dict(copiers.exits)} (-9 SIGKILL, {WATCHDOG_EXIT} librdkafka stuck)"
    )


def test_confluent_copiers_copy_exactly_once_through_kills_and_restarts(fault_broker: FaultBroker) -> None:
    copy_through_faults(fault_broker, "confluent-kafka")


@pytest.mark.kafka_side
@pytest.mark.skipif(not kafka_available(), reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)")
def test_kafka_transactional_message_copier_copies_exactly_once_through_kills(fault_broker: FaultBroker) -> None:
    copy_through_faults(fault_broker, "java")
