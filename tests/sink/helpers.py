"""Input for the sink tests, and sink processes (tests/sink/sink_app.py) to run and to kill."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.sink.conftest import Backend

TIMEOUT_S = 30
APP_TIMEOUT_S = 120


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(TIMEOUT_S)


def produce(bootstrap: str, topic: str, values: Iterable[str], partitions: int) -> list[str]:
    """Sends `values` (value i to partition i % partitions), idempotent, acks=all."""
    sent: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i, value in enumerate(values):
        producer.produce(topic, value.encode(), partition=i % partitions)
        sent.append(value)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(TIMEOUT_S) == 0
    return sent


def numbered(start: int, stop: int) -> list[str]:
    return [str(i) for i in range(start, stop)]


def app_command(bootstrap: str, backend: Backend, group: str, topic: str, *options: str | int | float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.sink.sink_app",
        "--bootstrap",
        bootstrap,
        "--db",
        backend.spec,
        "--group",
        group,
        "--topic",
        topic,
        *map(str, options),
    ]


def start_app(
    bootstrap: str, backend: Backend, group: str, topic: str, *options: str | int | float
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(app_command(bootstrap, backend, group, topic, *options))


def run_app(bootstrap: str, backend: Backend, group: str, topic: str, *options: str | int | float) -> int:
    return subprocess.run(app_command(bootstrap, backend, group, topic, *options), timeout=APP_TIMEOUT_S).returncode


def stats(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def wait_for(condition: Callable[[], bool], timeout_s: float = TIMEOUT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met in {timeout_s} s")
        time.sleep(0.1)


def row_count(backend: Backend) -> int:
    return int(backend.query("SELECT count(*) FROM output")[0][0])
