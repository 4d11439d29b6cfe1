"""`tidelog recover`, run as an operator would (the real command in a subprocess): it reports the
damage, cuts the log at the first bad batch only when asked, moves the originals aside, and the
broker then starts and serves what is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_batch, now_ms, read_everything, segment_batches
from tests.server.conftest import BrokerProcess, free_port
from tidelog.config import TopicConfig
from tidelog.storage import LogManager, PartitionLog, TopicPartition, log_config_for

BATCHES = 400
DAMAGED = 150  # the batch whose bytes are flipped
SEGMENT_BYTES = 256 * 1024


def tidelog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tidelog", *args], capture_output=True, text=True, timeout=120)


def write_topic(data_dir: Path) -> list[bytes]:
    """A topic `t` of several segments, closed cleanly, with an idempotent producer's batches;
    returns the batches as stored."""
    logs = LogManager.open(data_dir)
    logs.create_topic("t", 1, {"internal.segment.bytes": str(SEGMENT_BYTES)})
    partition = logs.get(TopicPartition("t", 0))
    assert partition is not None
    for i in range(BATCHES):
        partition.log.append(make_batch(count=2, value_bytes=500, tag=i), now_ms())
    partition.log.flush()
    logs.close()
    return stored_batches(data_dir / "t-0")


def stored_batches(directory: Path) -> list[bytes]:
    return [batch for segment in sorted(directory.glob("*.log")) for batch in stored_batches_in(segment)]


def stored_batches_in(segment: Path) -> list[bytes]:
    data = segment.read_bytes()
    return [data[position : position + size] for position, size, _, _ in segment_batches(segment)]


def damage(directory: Path, batch: int) -> tuple[Path, int, int]:
    """Flips a bit inside the `batch`th batch; returns its segment, position and first offset."""
    seen = 0
    for segment in sorted(directory.glob("*.log")):
        found = segment_batches(segment)
        if batch < seen + len(found):
            position, _, base, _ = found[batch - seen]
            data = bytearray(segment.read_bytes())
            data[position + 100] ^= 0x08
            segment.write_bytes(bytes(data))
            return segment, position, base
        seen += len(found)
    raise AssertionError("no such batch")


def test_recover_reports_then_cuts_at_the_first_bad_batch(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    batches = write_topic(data_dir)
    segments_before = sorted((data_dir / "t-0").glob("*.log"))
    segment, position, first_bad = damage(data_dir / "t-0", DAMAGED)
    original = {path.name: path.read_bytes() for path in segments_before}

    report = tidelog("recover", "--data-dir", str(data_dir))
    assert report.returncode == 1, report
    assert f"{segment.name} bytes {position}.." in report.stdout
    assert f"offsets {first_bad}..{first_bad + 1} (below the recovery point: possibly acknowledged)" in report.stdout
    assert "CRC-32C mismatch" in report.stdout

    dry = tidelog("recover", "--data-dir", str(data_dir), "--truncate-at-corruption", "--dry-run")
    assert dry.returncode == 1 and "would cut" in dry.stdout
    assert {p.name: p.read_bytes() for p in segments_before} == original, "a dry run changes nothing"

    cut = tidelog("recover", "--data-dir", str(data_dir), "--truncate-at-corruption")
    assert cut.returncode == 0, cut
    last = sum(int.from_bytes(b[57:61], "big") for b in batches) - 1
    assert f"offsets {first_bad}..{last} are gone ({last - first_bad + 1} offset(s))" in cut.stdout
    assert f"log end offset now {first_bad}" in cut.stdout
    # Nothing deleted: every original segment's bytes are in the recovered- directory.
    (aside,) = (data_dir / "t-0").glob("recovered-*")
    assert {p.name: p.read_bytes() for p in aside.glob("*.log")} == original
    # What is left is exactly the batches before the damaged one, and the log opens clean.
    log, report = PartitionLog.open(data_dir / "t-0", log_config_for(TopicConfig()))
    assert report.clean_shutdown and log.log_end_offset == first_bad
    assert read_everything(log) == b"".join(batches[:DAMAGED])
    log.close()
    again = tidelog("recover", "--data-dir", str(data_dir))
    assert again.returncode == 0 and "0 damaged batch(es)" in again.stdout


def test_a_broker_refusing_a_damaged_log_points_to_recover_and_starts_after_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    batches = write_topic(data_dir)
    # A crash after the flush: the next start scans the segment holding the recovery point.
    checkpoint = data_dir / "t-0" / "log-state.checkpoint"
    checkpoint.write_text(checkpoint.read_text().replace("clean-shutdown 1", "clean-shutdown 0"))
    last_segment_first = len(batches) - len(stored_batches_in(sorted((data_dir / "t-0").glob("*.log"))[-1]))
    _, _, first_bad = damage(data_dir / "t-0", last_segment_first + 3)
    refused = tidelog("serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}")
    assert refused.returncode == 1
    assert "refusing to start" in refused.stderr and "tidelog recover" in refused.stderr
    assert tidelog("recover", "--data-dir", str(data_dir), "--truncate-at-corruption").returncode == 0
    broker = BrokerProcess(data_dir, free_port()).start()
    try:
        assert broker.process is not None and broker.process.poll() is None
    finally:
        assert broker.stop() == 0
    log, _ = PartitionLog.open(data_dir / "t-0", log_config_for(TopicConfig()))
    assert log.log_end_offset == first_bad
    log.close()


def test_recover_refuses_a_directory_a_broker_holds(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", free_port()).start()
    try:
        result = tidelog("recover", "--data-dir", str(tmp_path / "data"))
        assert result.returncode == 2 and "in use by a running broker" in result.stderr
    finally:
        assert broker.process is not None
        os.kill(broker.process.pid, signal.SIGTERM)
        broker.process.wait(20)
