"""The broker under a fault test, tidelog or Apache Kafka 4.4, behind one interface: started,
SIGKILLed, stopped cleanly, paused (SIGSTOP) and resumed, always on the same data directory and
port, so clients reconnect to it as they would to a broker that came back.

Which one runs is the `--fault-broker` option (`tidelog`, the default; `kafka`; or `both`), so a
fault test that fails on Kafka too is known to be a test problem or a Kafka problem. A test that
must run on both whatever the option says (the pause tests) asks for `both_brokers`.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.compat.conftest import kafka_available, load_reference_broker
from tests.server.conftest import BrokerProcess, free_port

# What the fault tests set on either broker: small internal topics (loading them is part of
# every restart), no initial rebalance delay, and timed-out transactions found each second.
FAULT_SETTINGS = {
    "transaction.state.log.num.partitions": "3",
    "offsets.topic.num.partitions": "3",
    "group.initial.rebalance.delay.ms": "0",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
}
KAFKA_START_TIMEOUT_S = 120


class FaultBroker(Protocol):
    name: str
    bootstrap: str
    data_dir: Path

    def start(self) -> None: ...
    def kill(self) -> None: ...
    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def log_tail(self, lines: int = 40) -> str: ...


class TidelogBroker:
    name = "tidelog"

    def __init__(self, data_dir: Path, settings: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.process = BrokerProcess(data_dir, free_port(), settings)
        self.bootstrap = self.process.bootstrap

    def start(self) -> None:
        self.process.lines.clear()
        self.process.start()

    def kill(self) -> None:
        self.resume()
        self.process.kill()

    def stop(self) -> None:
        self.resume()
        self.process.stop()

    def _signal(self, number: int) -> None:
        if self.process.process is not None and self.process.process.poll() is None:
            os.kill(self.process.process.pid, number)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def running(self) -> bool:
        return self.process.process is not None and self.process.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return "".join(self.process.lines[-lines:])


class KafkaBroker:
    name = "kafka"

    def __init__(self, data_dir: Path, settings: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.reference = load_reference_broker()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = self.reference.start(  # type: ignore[attr-defined]
            self.data_dir, self.port, KAFKA_START_TIMEOUT_S, self.settings
        )

    def kill(self) -> None:
        self.resume()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(60)

    def stop(self) -> None:
        self.resume()
        if self.process is not None:
            self.reference.stop(self.process)  # type: ignore[attr-defined]

    def _signal(self, number: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(number)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        log = self.data_dir / "server.log"
        return "".join(log.read_text(errors="replace").splitlines(keepends=True)[-lines:]) if log.exists() else ""


def make_broker(name: str, data_dir: Path, settings: dict[str, str] | None = None) -> FaultBroker:
    merged = {**FAULT_SETTINGS, **(settings or {})}
    if name == "kafka":
        if not kafka_available():
            pytest.skip("needs Java and the Kafka jars (bench/kafka/fetch.sh)")
        return KafkaBroker(data_dir, merged)
    return TidelogBroker(data_dir, merged)


def running_broker(name: str, data_dir: Path, settings: dict[str, str] | None = None) -> Iterator[FaultBroker]:
    broker = make_broker(name, data_dir, settings)
    broker.start()
    try:
        yield broker
    finally:
        try:
            broker.stop()
        except Exception:  # a broker left paused or already gone must not hide the test's own failure
            broker.kill()
