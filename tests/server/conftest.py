"""A real broker process on a free loopback port, for tests that talk TCP to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

READY_TIMEOUT_S = 15
STOP_TIMEOUT_S = 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class BrokerProcess:
    """`tidelog serve` in a subprocess; its log lines are collected in `lines`."""

    data_dir: Path
    port: int
    settings: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> BrokerProcess:
        command = [
            sys.executable,
            "-m",
            "tidelog",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.bootstrap,
        ]
        for key, value in self.settings.items():
            command += ["--set", f"{key}={value}"]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        ready = threading.Event()
        threading.Thread(target=self._collect, args=(ready,), daemon=True).start()
        if not ready.wait(READY_TIMEOUT_S):
            self.kill()
            raise AssertionError(f"broker not ready in {READY_TIMEOUT_S}s: {self.lines}")
        return self

    def _collect(self, ready: threading.Event) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if " ready: " in line:
                ready.set()

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(STOP_TIMEOUT_S)

    def kill(self) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)

    def log_text(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path / "data", free_port()).start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


def wait_until(condition: object, timeout_s: float = 10.0, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(interval_s)
    raise AssertionError("condition not met in time")
