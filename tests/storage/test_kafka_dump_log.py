"""Apache Kafka's own offline dumper reads our segments and indexes without complaint, and lists
the aborted transactions of our `.txnindex` files.

Runs where Java and the Kafka jars are present (`bench/kafka/fetch.sh` puts them in
.cache/kafka/libs; .ci/run fetches them, so CI runs this test).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import make_batch, now_ms, open_log
from tests.storage.test_txn_index import interleaved
from tidelog.protocol.record_batch import iter_batches
from tidelog.storage import PartitionLog

LIBS = Path(__file__).parents[2] / ".cache" / "kafka" / "libs"
DUMPER = "org.apache.kafka.tools.DumpLogSegments"

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or not any(LIBS.glob("kafka_2.13-*.jar")),
    reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)",
)


def dump(directory: Path, suffixes: tuple[str, ...] = (".log", ".index", ".timeindex")) -> tuple[str, str]:
    files = sorted(str(p) for p in directory.iterdir() if p.suffix in suffixes)
    result = subprocess.run(
        ["java", "-cp", f"{LIBS}/*", DUMPER, "--deep-iteration", "--files", ",".join(files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


def without_start_quirk(stderr: str) -> str:
    """Drops the dumper's complaint that every segment not based at 0 starts "after -1".

    DumpLogSegments starts its consecutive-offset check at -1 for each file, so it says
    "-1 is followed by <base offset>" for any later segment, Kafka's own included. Only that
    exact pair of lines, naming the file's own base offset, is dropped.
    """
    lines = stderr.splitlines()
    kept = []
    at = 0
    while at < len(lines):
        name = lines[at].removeprefix("Non-consecutive offsets in ")
        base = Path(name).stem
        quirk = name != lines[at] and at + 1 < len(lines) and lines[at + 1].strip() == f"-1 is followed by {int(base)}"
        if quirk:
            at += 2
            continue
        kept.append(lines[at])
        at += 1
    return "\n".join(kept)


def assert_no_complaints(stdout: str, stderr: str, batches: int) -> None:
    stderr = without_start_quirk(stderr)
    assert stderr == "", stderr  # index/time-index mismatches, ordering, missing offsets go here
    assert "isvalid: false" not in stdout and "invalid bytes" not in stdout
    batch_lines = [line for line in stdout.splitlines() if line.startswith("baseOffset:")]
    assert len(batch_lines) == batches
    assert all("magic: 2" in line for line in batch_lines)


def fill(directory: Path) -> tuple[int, PartitionLog]:
    """Several segments of batches of varied sizes and timestamps, some going back in time;
    returns the batch count and the still open log."""
    rng = random.Random(5)
    log = open_log(directory, **{"internal.segment.bytes": 64 * 1024})
    base = now_ms() - 1_000_000
    for i in range(300):
        timestamp = base + i * 1000 + rng.randint(-3000, 3000)
        log.append(
            make_batch(count=rng.randint(1, 12), value_bytes=rng.randint(10, 900), timestamp_ms=timestamp, tag=i),
            now_ms(),
        )
    count = sum(len(iter_batches(p.read_bytes())) for p in directory.glob("*.log"))
    assert log.segment_count > 3
    return count, log


def test_dump_log_reads_cleanly_closed_segments(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    batches, log = fill(directory)
    log.close()
    assert_no_complaints(*dump(directory), batches)


def test_dump_log_reads_segments_with_indexes_rebuilt_by_recovery(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    batches, log = fill(directory)
    del log  # crash
    for index in directory.glob("*index"):
        index.unlink()
    open_log(directory).close()
    assert_no_complaints(*dump(directory), batches)


def by_file(stdout: str) -> dict[str, list[str]]:
    """The dumper's output lines under each "Dumping <file>" line, by file name."""
    out: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in stdout.splitlines():
        if line.startswith("Dumping "):
            lines = out.setdefault(Path(line.removeprefix("Dumping ")).name, [])
        else:
            lines.append(line)
    return out


def test_dump_log_lists_our_aborted_transactions(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = open_log(directory)
    entries = interleaved(log)  # three segments; aborts in the first and the last
    log.close()
    stdout, stderr = dump(directory, (".log", ".txnindex"))
    assert without_start_quirk(stderr) == "", stderr
    files = by_file(stdout)
    listed = files[f"{0:020d}.txnindex"] + files[f"{10:020d}.txnindex"]
    assert listed == [
        f"version: 0 producerId: {pid} firstOffset: {first} lastOffset: {last} lastStableOffset: {lso}"
        for pid, first, last, lso in entries
    ]
    assert f"{5:020d}.txnindex" not in files
    # Each entry's last offset is an ABORT marker of its producer in the segment's log.
    logs = {name: lines for name, lines in files.items() if name.endswith(".log")}
    for pid, _, last, _ in entries:
        base = 0 if last < 5 else 10
        batch = next(line for line in logs[f"{base:020d}.log"] if line.startswith(f"baseOffset: {last} "))
        assert f"producerId: {pid} " in batch and "isTransactional: true" in batch and "isControl: true" in batch
        record = next(line for line in logs[f"{base:020d}.log"] if line.startswith(f"| offset: {last} "))
        assert "endTxnMarker: ABORT" in record
