"""`tidelog serve` opens the data directory, reports ready, and closes cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tidelog.storage import LogManager, TopicPartition
from tests.conftest import make_batch

READY_TIMEOUT_S = 10


def start(data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tidelog", "serve", "--data-dir", str(data_dir)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(process: subprocess.Popen[str], text: str) -> list[str]:
    assert process.stderr is not None
    lines = []
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        if text in line or not line:
            return lines
    raise AssertionError(f"no {text!r} within {READY_TIMEOUT_S}s: {lines}")


def test_serve_opens_logs_and_closes_cleanly_on_sigterm(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path)
    manager.create_topic("orders", 2)
    partition = manager.get(TopicPartition("orders", 1))
    assert partition is not None
    partition.append(make_batch(count=4))
    del manager, partition  # an unclean stop: serve must recover

    process = start(tmp_path)
    lines = wait_for(process, "opened")
    assert any("recovered orders-1" in line for line in lines)
    assert "1 topic(s), 2 partition(s)" in lines[-1]
    process.send_signal(signal.SIGTERM)
    assert "closed cleanly" in "".join(wait_for(process, "closed cleanly"))
    assert process.wait(timeout=READY_TIMEOUT_S) == 0

    reopened = LogManager.open(tmp_path)
    assert all(report.clean_shutdown for report in reopened.recovery_reports.values())
    assert reopened.get(TopicPartition("orders", 1)).log_end_offset == 4  # type: ignore[union-attr]
    reopened.close()


def test_a_second_serve_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = start(tmp_path)
    wait_for(first, "opened")
    second = subprocess.run([sys.executable, "-m", "tidelog", "serve", "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=READY_TIMEOUT_S)  # fmt: skip
    assert second.returncode != 0 and "in use by another tidelog process" in second.stderr
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=READY_TIMEOUT_S) == 0
