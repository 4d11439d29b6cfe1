"""`tidelog serve`: configuration checks at start, recovery, ready line, clean SIGTERM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import make_batch
from tests.server.conftest import BrokerProcess, free_port
from tidelog.storage import LogManager, TopicPartition

TIMEOUT_S = 15


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidelog", "serve", *args], capture_output=True, text=True, timeout=TIMEOUT_S
    )


def test_unknown_or_invalid_settings_are_refused_at_start(tmp_path: Path) -> None:
    unknown = serve("--data-dir", str(tmp_path), "--set", "log.segment.bites=100")
    assert unknown.returncode == 2 and "unknown broker config 'log.segment.bites'" in unknown.stderr
    invalid = serve("--data-dir", str(tmp_path), "--set", "num.partitions=many")
    assert invalid.returncode == 2 and "num.partitions must be an integer" in invalid.stderr
    properties = tmp_path / "server.properties"
    properties.write_text("# comment\nauto.create.topics.enable=perhaps\n")
    from_file = serve("--data-dir", str(tmp_path), "--config", str(properties))
    assert from_file.returncode == 2 and "auto.create.topics.enable must be true or false" in from_file.stderr


def test_serve_recovers_after_a_crash_and_closes_cleanly_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = LogManager.open(data)
    manager.create_topic("orders", 2)
    manager.get(TopicPartition("orders", 1)).append(make_batch(count=4))  # type: ignore[union-attr]
    del manager  # an unclean stop: serve must recover
    broker = BrokerProcess(data, free_port()).start()
    assert "recovered orders-1" in broker.log_text()
    assert "1 topic(s), 2 partition(s)" in broker.log_text()
    assert broker.stop() == 0
    assert "closed cleanly" in broker.log_text()
    reopened = LogManager.open(data)
    assert all(report.clean_shutdown for report in reopened.recovery_reports.values())
    assert reopened.get(TopicPartition("orders", 1)).log_end_offset == 4  # type: ignore[union-attr]
    reopened.close()


def test_a_second_broker_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = BrokerProcess(tmp_path / "data", free_port()).start()
    second = serve("--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{free_port()}")
    assert second.returncode == 1 and "in use by another tidelog process" in second.stderr
    assert first.stop() == 0
