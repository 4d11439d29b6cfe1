"""Exactly once under faults (Kafka's transactions_test.py design, scaled for CI): `input` holds
numbered records over 4 partitions; two confluent-kafka copiers (tests/faults/copier.py, each
with its own transactional id, one read_committed group) copy it to `output`, a third of their
transactions aborted and rewound. Meanwhile copiers are SIGKILLed and started again with the
same transactional id, and the broker is SIGKILLed and restarted, and restarted cleanly.
Afterwards `output` read at read_committed is `input` exactly (no loss, no duplicate), and after
a quiet moment LATEST at read_committed equals LATEST at read_uncommitted on every partition
(no hanging transaction)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.server.conftest import BrokerProcess, free_port, wait_until

# Not in the default run yet: about one run in three a copier stays stuck after a broker SIGKILL
# (seen blocked in send_offsets_to_transaction, and polling with nothing coming), which the
# exactly-once-under-faults issue is to find and fix. Run with `pytest -m faults`.
pytestmark = pytest.mark.faults
COPIER = Path(__file__).parent / "copier.py"
PARTITIONS = 4
RECORDS = 20_000
COPIERS = 2
DEADLINE_S = 120
FAULT_GAP_S = (1.5, 3.0)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    settings = {
        "transaction.state.log.num.partitions": "3",
        "offsets.topic.num.partitions": "3",
        "group.initial.rebalance.delay.ms": "0",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    }
    process = BrokerProcess(tmp_path / "data", free_port(), settings).start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


class Copiers:
    """The copier processes, started again (same transactional id) whenever one is gone."""

    def __init__(self, bootstrap: str, log: Path) -> None:
        self.bootstrap = bootstrap
        self.log = log.open("ab")
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts = 0

    def keep_running(self) -> None:
        for index in range(COPIERS):
            process = self.processes.get(index)
            if process is None or process.poll() is not None:
                if process is not None:
                    self.restarts += 1
                command = [sys.executable, str(COPIER), self.bootstrap, f"copier-{index}", "copiers"]
                self.processes[index] = subprocess.Popen(command, stderr=self.log)

    def kill_one(self, rng: random.Random) -> None:
        self.processes[rng.randrange(COPIERS)].kill()

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait(30)


def read_committed(bootstrap: str, isolation: str = "read_committed") -> tuple[Counter[bytes], dict[int, int]]:
    """Every value of `output` at `isolation`, read to the end, and the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{time.monotonic_ns()}",
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition("output", p, 0) for p in range(PARTITIONS)])
    values: Counter[bytes] = Counter()
    ends: dict[int, int] = {}
    deadline = time.monotonic() + 60
    while len(ends) < PARTITIONS and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            if message.error().code() == -191:  # _PARTITION_EOF
                ends[message.partition()] = message.offset()
            continue
        values[message.value()] += 1
    consumer.close()
    return values, ends


def test_copy_is_exactly_once_through_copier_and_broker_kills(broker: BrokerProcess) -> None:
    rng = random.Random(12)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in ("input", "output")]).values():
        future.result(30)
    seed = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(RECORDS):
        seed.produce("input", value=f"n-{i}".encode(), partition=i % PARTITIONS)
        if i % 1000 == 0:
            seed.poll(0)
    seed.flush(60)
    expected = Counter(f"n-{i}".encode() for i in range(RECORDS))

    copiers = Copiers(broker.bootstrap, broker.data_dir.parent / "copiers.log")
    faults = ["kill copier", "kill broker", "kill copier", "restart broker", "kill copier", "kill broker"]
    done: list[str] = []
    try:
        copiers.keep_running()
        deadline = time.monotonic() + DEADLINE_S
        next_fault = time.monotonic() + rng.uniform(*FAULT_GAP_S)
        while True:
            if time.monotonic() >= deadline:
                for process in copiers.processes.values():
                    process.send_signal(signal.SIGUSR1)
                time.sleep(1)
                values, committed = read_committed(broker.bootstrap)
                _, uncommitted = read_committed(broker.bootstrap, "read_uncommitted")
                log = "".join(broker.lines[-40:])
                raise AssertionError(
                    f"not copied in time after faults {done}: {sum(values.values())} of {RECORDS} committed; "
                    f"output ends read_committed {committed}, read_uncommitted {uncommitted}; copier exits "
                    f"{[p.poll() for p in copiers.processes.values()]}; broker log:\n{log}"
                )
            copiers.keep_running()
            if faults and time.monotonic() >= next_fault:
                fault = faults.pop(0)
                if fault == "kill copier":
                    copiers.kill_one(rng)
                elif fault == "kill broker":
                    broker.kill()
                    broker.lines.clear()
                    broker.start()
                else:
                    broker.stop()
                    broker.lines.clear()
                    broker.start()
                done.append(fault)
                next_fault = time.monotonic() + rng.uniform(*FAULT_GAP_S)
                continue
            if not faults:
                values, _ = read_committed(broker.bootstrap)
                if sum(values.values()) >= RECORDS:
                    break
            time.sleep(0.5)
    finally:
        copiers.stop()
    values, committed_ends = read_committed(broker.bootstrap)
    assert values == expected, (
        f"lost {sum((expected - values).values())}, duplicated {sum((values - expected).values())} "
        f"after {done} and {copiers.restarts} copier restarts"
    )

    def no_hanging_transaction() -> bool:
        _, committed = read_committed(broker.bootstrap)
        _, uncommitted = read_committed(broker.bootstrap, "read_uncommitted")
        return committed == uncommitted

    wait_until(no_hanging_transaction, timeout_s=30, interval_s=1)
