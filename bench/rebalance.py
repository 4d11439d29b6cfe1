"""Rebalance times of consumer groups on tidelog and on Apache Kafka 4.4, in the same run.

    python bench/rebalance.py [--partitions 12] [--members 3] [--rounds 3] [--no-kafka]

For each broker and each assignor (eager `range`, `cooperative-sticky`) it measures, with
confluent-kafka consumers polled from one thread:

- join: `--members` consumers subscribe at once; until every partition is owned exactly once;
- add: one more member subscribes; until the new member owns partitions and all are covered;
- leave: one member closes (LeaveGroup); until the rest cover every partition;
- kill: a member in a child process is SIGKILLed; until the rest cover every partition (this
  is dominated by session.timeout.ms, set to the minimum of 6000 ms).

Both brokers run with group.initial.rebalance.delay.ms=0. Medians of `--rounds` rounds, and
ratios tidelog/Kafka. Progress goes to stderr; a markdown table to stdout (and `--out`).
No figure here is a test assertion.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from tests.server.conftest import BrokerProcess, free_port  # noqa: E402

SESSION_TIMEOUT_MS = 6000
WAIT_S = 60
POLL_S = 0.02
ASSIGNORS = ("range", "cooperative-sticky")
MEMBER_SCRIPT = f"""
import sys, time
from confluent_kafka import Consumer
consumer = Consumer({{"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
                     "partition.assignment.strategy": sys.argv[3],
                     "session.timeout.ms": {SESSION_TIMEOUT_MS}, "enable.auto.commit": False}})
consumer.subscribe([sys.argv[4]], on_assign=lambda c, partitions: partitions and print("assigned", flush=True))
while True:
    consumer.poll(0.05)
"""


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def tidelog_broker() -> Iterator[str]:
    broker = BrokerProcess(
        Path(tempfile.mkdtemp(prefix="tidelog-rebalance-")) / "data",
        free_port(),
        {"group.initial.rebalance.delay.ms": "0"},
    ).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@contextmanager
def kafka_broker() -> Iterator[str]:
    spec = importlib.util.spec_from_file_location("reference_broker", ROOT / "bench" / "kafka" / "reference_broker.py")
    assert spec is not None and spec.loader is not None
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    port = free_port()
    process = reference.start(tempfile.mkdtemp(prefix="kafka-rebalance-"), port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        reference.stop(process)


class Member:
    def __init__(self, bootstrap: str, group: str, assignor: str, topic: str) -> None:
        self.owned: set[int] = set()
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "partition.assignment.strategy": assignor,
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "enable.auto.commit": False,
            }
        )
        self.cooperative = assignor == "cooperative-sticky"
        self.consumer.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked)

    def _assigned(self, consumer: Consumer, partitions: list) -> None:  # type: ignore[type-arg]
        if self.cooperative:
            self.owned |= {p.partition for p in partitions}
        else:
            self.owned = {p.partition for p in partitions}

    def _revoked(self, consumer: Consumer, partitions: list) -> None:  # type: ignore[type-arg]
        self.owned -= {p.partition for p in partitions}

    def poll(self) -> None:
        self.consumer.poll(0)


def wait_until(members: list[Member], done: Callable[[], bool]) -> float:
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > WAIT_S:
            raise TimeoutError("the group did not settle")
        for member in members:
            member.poll()
        time.sleep(POLL_S)
    return time.monotonic() - started


def covered_once(members: list[Member], partitions: int) -> bool:
    owned = [p for m in members for p in m.owned]
    return sorted(owned) == list(range(partitions))


def one_round(bootstrap: str, assignor: str, partitions: int, count: int) -> dict[str, float]:
    topic, group = f"rebalance-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions)])[topic].result()
    time.sleep(0.5)  # Kafka elects the new partitions' leader asynchronously
    times: dict[str, float] = {}
    members = [Member(bootstrap, group, assignor, topic) for _ in range(count)]
    times["join"] = wait_until(members, lambda: covered_once(members, partitions))
    newcomer = Member(bootstrap, group, assignor, topic)
    members.append(newcomer)
    times["add"] = wait_until(members, lambda: bool(newcomer.owned) and covered_once(members, partitions))
    leaving = members.pop(0)
    started = time.monotonic()
    leaving.consumer.close()
    times["leave"] = time.monotonic() - started + wait_until(members, lambda: covered_once(members, partitions))
    child = subprocess.Popen(
        [sys.executable, "-c", MEMBER_SCRIPT, bootstrap, group, assignor, topic], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    os.set_blocking(child.stdout.fileno(), False)
    wait_until(members, lambda: "assigned" in (child.stdout.readline() or ""))  # type: ignore[union-attr]
    wait_until(members, lambda: sum(len(m.owned) for m in members) < partitions)  # the others settled without its share
    child.send_signal(signal.SIGKILL)
    child.wait()
    times["kill"] = wait_until(members, lambda: covered_once(members, partitions))
    for member in members:
        member.consumer.close()
    return times


def measure(name: str, broker: Callable[[], contextmanager], args: argparse.Namespace) -> dict[str, dict[str, float]]:  # type: ignore[type-arg]
    results: dict[str, dict[str, float]] = {}
    with broker() as bootstrap:
        for assignor in ASSIGNORS:
            rounds = []
            for round_number in range(args.rounds):
                progress(f"{name} {assignor} round {round_number + 1}/{args.rounds}")
                rounds.append(one_round(bootstrap, assignor, args.partitions, args.members))
            results[assignor] = {phase: statistics.median(r[phase] for r in rounds) for phase in rounds[0]}
            progress(f"  {results[assignor]}")
    return results


def table(tidelog: dict[str, dict[str, float]], kafka: dict[str, dict[str, float]] | None) -> str:
    lines = ["| assignor | phase | tidelog s | Kafka 4.4 s | tidelog/Kafka |", "|---|---|---:|---:|---:|"]
    for assignor, phases in tidelog.items():
        for phase, seconds in phases.items():
            theirs = kafka[assignor][phase] if kafka else None
            ratio = f"{seconds / theirs:.2f}" if theirs else ""
            lines.append(
                f"| {assignor} | {phase} | {seconds:.3f} | {'' if theirs is None else f'{theirs:.3f}'} | {ratio} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-kafka", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tidelog = measure("tidelog", tidelog_broker, args)
    kafka = None if args.no_kafka else measure("Kafka", kafka_broker, args)
    text = (
        f"Rebalance times, confluent-kafka consumers, {args.partitions} partitions, {args.members} members, "
        f"session.timeout.ms={SESSION_TIMEOUT_MS}, median of {args.rounds}\n\n" + table(tidelog, kafka) + "\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
