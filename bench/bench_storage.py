"""Storage engine benchmarks: append throughput against raw writes, durable appends against
raw write + fdatasync, and lookup/read latency on a 1 GiB log.

Run (see bench/README.md):
    .venv/bin/pytest bench/bench_storage.py --benchmark-enable -p no:cacheprovider
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path
from typing import Any

import pytest

from tidelog.config import TopicConfig
from tidelog.storage import FileSlice, PartitionLog, log_config_for

KiB = 1 << 10
MiB = 1 << 20

LOG_CONFIG = log_config_for(TopicConfig(segment_bytes=1 << 30))

# Throughput: each timed round appends ROUND_BATCHES batches (64 MiB of payload) into a fresh
# log or file, which is deleted after the round so disk use stays bounded.
ROUND_BATCHES = 4096
ROUNDS = 5
WARMUP_ROUNDS = 1
# Durable appends: fsync every so many batches (16 x 16 KiB = 256 KiB, 64 x 16 KiB = 1 MiB).
SYNC_EVERY_BATCHES = {"256KiB": 16, "1MiB": 64}

# Lookups: a 1 GiB log of 16 KiB batches, one millisecond of timestamps per batch.
BIG_LOG_BATCHES = 65536
BIG_LOG_BATCHES_PER_APPEND = 16
BIG_LOG_PROGRESS_EVERY = 4096
TIMESTAMP_STEP_MS = 1
FETCH_MAX_BYTES = 1 * MiB
LOOKUP_SEED = 1234
LOOKUP_SAMPLES = 4096
COPY_SLICES = 64


# --- append throughput ---------------------------------------------------------------------


class FreshLog:
    """pedantic setup/teardown: each round gets a new, empty log, deleted after the round."""

    def __init__(self, root: Path) -> None:
        self.directory = root / "log"

    def setup(self) -> tuple[tuple[PartitionLog], dict[str, Any]]:
        log, _ = PartitionLog.open(self.directory, LOG_CONFIG)
        return (log,), {}

    def teardown(self, log: PartitionLog) -> None:
        log.close()
        shutil.rmtree(self.directory)


class FreshFile:
    """pedantic setup/teardown: each round gets a new, empty O_APPEND file, deleted after it."""

    def __init__(self, root: Path) -> None:
        self.path = root / "raw.bin"

    def setup(self) -> tuple[tuple[int], dict[str, Any]]:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        return (fd,), {}

    def teardown(self, fd: int) -> None:
        os.close(fd)
        os.unlink(self.path)


def run_rounds(
    benchmark: Any, fresh: FreshLog | FreshFile, target: Callable[[Any], None], batch: bytes, **info: str
) -> None:
    """Times ROUNDS rounds of `target` (ROUND_BATCHES batches each), with figures for the summary."""
    benchmark.extra_info.update(info, bytes_per_round=ROUND_BATCHES * len(batch), calls_per_round=ROUND_BATCHES)
    benchmark.pedantic(target, setup=fresh.setup, teardown=fresh.teardown, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)


def test_append(benchmark: Any, scratch: Path, batch: bytes, now: int) -> None:
    def append_round(log: PartitionLog) -> None:
        for _ in range(ROUND_BATCHES):
            log.append(batch, now)

    benchmark.group = "append 64 MiB"
    run_rounds(benchmark, FreshLog(scratch), append_round, batch, case="append", baseline="raw os.write")


def test_raw_write(benchmark: Any, scratch: Path, batch: bytes) -> None:
    def write_round(fd: int) -> None:
        for _ in range(ROUND_BATCHES):
            os.write(fd, batch)

    benchmark.group = "append 64 MiB"
    run_rounds(benchmark, FreshFile(scratch), write_round, batch, case="raw os.write")


# --- durable append ------------------------------------------------------------------------


@pytest.mark.parametrize("interval", SYNC_EVERY_BATCHES)
def test_durable_append(benchmark: Any, scratch: Path, batch: bytes, now: int, interval: str) -> None:
    every = SYNC_EVERY_BATCHES[interval]

    def durable_round(log: PartitionLog) -> None:
        for i in range(1, ROUND_BATCHES + 1):
            log.append(batch, now)
            if i % every == 0:
                log.flush()

    benchmark.group = f"durable append, sync every {interval}"
    run_rounds(
        benchmark,
        FreshLog(scratch),
        durable_round,
        batch,
        case=f"append+flush/{interval}",
        baseline=f"os.write+fdatasync/{interval}",
    )


@pytest.mark.parametrize("interval", SYNC_EVERY_BATCHES)
def test_raw_write_fdatasync(benchmark: Any, scratch: Path, batch: bytes, interval: str) -> None:
    every = SYNC_EVERY_BATCHES[interval]

    def durable_round(fd: int) -> None:
        for i in range(1, ROUND_BATCHES + 1):
            os.write(fd, batch)
            if i % every == 0:
                os.fdatasync(fd)

    benchmark.group = f"durable append, sync every {interval}"
    run_rounds(benchmark, FreshFile(scratch), durable_round, batch, case=f"os.write+fdatasync/{interval}")


# --- lookups and reads on a 1 GiB log ------------------------------------------------------


@dataclass(frozen=True)
class BigLog:
    log: PartitionLog
    first_timestamp: int
    last_timestamp: int


def fill(log: PartitionLog, batch_at: Callable[[int], bytes], first_timestamp: int, now: int) -> None:
    """Appends BIG_LOG_BATCHES batches, one TIMESTAMP_STEP_MS apart, printing progress."""
    for start in range(0, BIG_LOG_BATCHES, BIG_LOG_BATCHES_PER_APPEND):
        stop = start + BIG_LOG_BATCHES_PER_APPEND
        log.append(b"".join(batch_at(first_timestamp + i * TIMESTAMP_STEP_MS) for i in range(start, stop)), now)
        if stop % BIG_LOG_PROGRESS_EVERY == 0:
            sys.stderr.write(
                f"\rbuilding the 1 GiB log: {stop}/{BIG_LOG_BATCHES} batches, {log.size_bytes / MiB:.0f} MiB"
            )
            sys.stderr.flush()


@pytest.fixture(scope="module")
def big_log(
    batch_at: Callable[[int], bytes], uncaptured: Callable[[], AbstractContextManager[object]], now: int
) -> Iterator[BigLog]:
    with tempfile.TemporaryDirectory(prefix="tidelog-bench-", dir=tempfile.gettempdir()) as root:
        log, _ = PartitionLog.open(Path(root) / "log", LOG_CONFIG)
        first_timestamp = now - BIG_LOG_BATCHES * TIMESTAMP_STEP_MS
        with uncaptured():
            sys.stderr.write("\n")
            fill(log, batch_at, first_timestamp, now)
            sys.stderr.write(" ... fdatasync ...")
            log.flush()  # so writeback does not run under the timed reads
            sys.stderr.write(" done\n")
        yield BigLog(log, first_timestamp, first_timestamp + (BIG_LOG_BATCHES - 1) * TIMESTAMP_STEP_MS)
        log.close()


def random_offsets(log: PartitionLog) -> list[int]:
    rng = random.Random(LOOKUP_SEED)
    return [rng.randrange(log.log_start_offset, log.log_end_offset) for _ in range(LOOKUP_SAMPLES)]


def test_read_slice(benchmark: Any, big_log: BigLog) -> None:
    log, end = big_log.log, big_log.log.log_end_offset
    offsets = cycle(random_offsets(log))
    benchmark.group = "1 GiB log lookups"
    benchmark.extra_info.update(case="log.read 1 MiB (random offset)")
    benchmark(lambda: log.read(next(offsets), FETCH_MAX_BYTES, end))


def test_offset_for_timestamp(benchmark: Any, big_log: BigLog) -> None:
    rng = random.Random(LOOKUP_SEED)
    stamps = cycle([rng.randint(big_log.first_timestamp, big_log.last_timestamp) for _ in range(LOOKUP_SAMPLES)])
    log = big_log.log
    benchmark.group = "1 GiB log lookups"
    benchmark.extra_info.update(case="offset_for_timestamp (random ts)")
    benchmark(lambda: log.offset_for_timestamp(next(stamps)))


@pytest.fixture(scope="module")
def slices(big_log: BigLog) -> list[FileSlice]:
    """COPY_SLICES slices of up to 1 MiB at random offsets of the big log."""
    log, end = big_log.log, big_log.log.log_end_offset
    found = [log.read(offset, FETCH_MAX_BYTES, end) for offset in random_offsets(log)[:COPY_SLICES]]
    return [s for s in found if s is not None]


def mean_size(slices: list[FileSlice]) -> int:
    return sum(s.size for s in slices) // len(slices)


def test_slice_copy(benchmark: Any, slices: list[FileSlice]) -> None:
    each = cycle(slices)
    benchmark.group = "1 MiB copy read"
    benchmark.extra_info.update(
        case="FileSlice.read 1 MiB", baseline="os.pread 1 MiB", bytes_per_round=mean_size(slices)
    )
    benchmark(lambda: next(each).read())


def pread(s: FileSlice) -> bytes:
    return os.pread(s.fileno(), s.size, s.position)


def test_pread(benchmark: Any, slices: list[FileSlice]) -> None:
    each = cycle(slices)
    benchmark.group = "1 MiB copy read"
    benchmark.extra_info.update(case="os.pread 1 MiB", bytes_per_round=mean_size(slices))
    benchmark(lambda: pread(next(each)))
