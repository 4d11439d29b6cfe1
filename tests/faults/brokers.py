"""The broker under a fault test, tidelog or Apache Kafka 4.4, behind one interface: started,
SIGKILLed, stopped cleanly, paused (SIGSTOP) and resumed, always on the same data directory and
port, so clients reconnect to it as they would to a broker that came back.

Which one runs is the `--fault-broker` option (`tidelog`, the default; `kafka`; or `both`), so a
fault test that fails on Kafka too is known to be a test problem or a Kafka problem; without the
option a test marked `kafka_side` runs on both. A test that must run on both whatever the option
says (the pause tests) asks for `both_brokers`.
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
    def skipped_markers(self) -> list[str]:
        """The broker's own log lines saying it completed a transaction without writing its
        marker to some partition: that partition's records of the transaction stay open (a
        hanging transaction) or are covered by the producer's next marker."""
        ...


# Kafka 4.4's transaction coordinator, when a partition of a completing transaction has no
# leader endpoint in its metadata cache, takes the partition for deleted, drops it from the
# transaction and writes the completion without that marker (TransactionMarkerChannelManager).
# After a SIGKILL a single-node KRaft broker passes through that state: its controller replays
# the old broker registration, refuses the new one until the old session times out, then fences
# the broker, and every partition is leaderless for a moment while the coordinator already runs.
KAFKA_SKIPPED_MARKERS = "while trying to send transaction markers"
TIDELOG_SKIPPED_MARKER = "not written:"


class TidelogBroker:
    name = "tidelog"

    def __init__(self, data_dir: Path, settings: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.process = BrokerProcess(data_dir, free_port(), settings)
        self.bootstrap = self.process.bootstrap
        self._skipped: list[str] = []

    def start(self) -> None:
        self._skipped = self.skipped_markers()  # the log of the last run is cleared below
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

    def skipped_markers(self) -> list[str]:
        # tidelog retries a marker until it is written, unless the partition is gone (or refuses
        # it for good), and then logs it (TransactionCoordinator._complete).
        return self._skipped + [line for line in self.process.lines if TIDELOG_SKIPPED_MARKER in line]


class KafkaBroker:
    name = "kafka"

    def __init__(self, data_dir: Path, settings: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.reference = load_reference_broker()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"  # log4j appends to it across restarts
        self._log_read = 0  # bytes of it skipped_markers has searched
        self._skipped: list[str] = []

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
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "".join(text.splitlines(keepends=True)[-lines:])

    def skipped_markers(self) -> list[str]:
        # Called every few seconds while the log grows by megabytes: only the complete lines
        # written since the last call are searched.
        if self.log.exists():
            with self.log.open("rb") as log:
                log.seek(self._log_read)
                written = log.read()
            complete = written[: written.rfind(b"\n") + 1]
            self._log_read += len(complete)
            text = complete.decode(errors="replace")
            self._skipped += [line for line in text.splitlines() if KAFKA_SKIPPED_MARKERS in line]
        return list(self._skipped)


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
