"""Shared fixtures for the storage benchmarks, and the ratio summary printed after them.

Each benchmark names itself in `benchmark.extra_info`:

- `case`: the label shown in the summary, e.g. "append";
- `baseline` (optional): the `case` of the benchmark it is compared with, e.g. "raw os.write";
- `bytes_per_round` (optional): bytes moved by one timed round, for MiB/s;
- `calls_per_round` (optional): calls made by one timed round, for µs per call.

After the run the summary prints every case's figures and, for each case with a baseline
measured in the same run, `case / baseline = baseline time / case time`: the fraction of the
baseline's speed the case reaches (1.0 = as fast, 0.5 = half as fast).
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tidelog.protocol.record_batch import build_batch
from tidelog.storage import PartitionLog

KiB = 1 << 10
MiB = 1 << 20
RECORD_BYTES = 1 * KiB
RECORDS_PER_BATCH = 16
PAYLOAD_SEED = 20240601
TEMP_PREFIX = "tidelog-bench-"


@dataclass(frozen=True)
class Figures:
    """One benchmark's result, reduced to what the summary needs (times in seconds per round)."""

    case: str
    baseline: str | None
    median: float
    best: float
    bytes_per_round: int | None
    calls_per_round: int | None


RESULTS = pytest.StashKey[dict[str, Figures]]()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


PAYLOAD = random.Random(PAYLOAD_SEED).randbytes(RECORD_BYTES)


def make_batch(timestamp_ms: int) -> bytes:
    """A producer's batch: RECORDS_PER_BATCH records of RECORD_BYTES each, all at `timestamp_ms`."""
    return build_batch([(timestamp_ms, None, PAYLOAD, [])] * RECORDS_PER_BATCH)


@pytest.fixture(scope="session")
def now() -> int:
    """Wall clock (ms) at the start of the session: the `now_ms` passed to appends."""
    return now_ms()


@pytest.fixture(scope="session")
def batch_at() -> Callable[[int], bytes]:
    """`batch_at(timestamp_ms)`: a 16 KiB batch (16 records of 1 KiB) stamped `timestamp_ms`."""
    return make_batch


@pytest.fixture(scope="session")
def batch(now: int) -> bytes:
    """One 16 KiB batch (16 records of 1 KiB, about 16.6 KB with framing), stamped `now`."""
    return make_batch(now)


def make_scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=tempfile.gettempdir()))


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A fresh directory under tempfile.gettempdir(), deleted after the test."""
    path = make_scratch_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def uncaptured(pytestconfig: pytest.Config) -> Callable[[], AbstractContextManager[object]]:
    """`with uncaptured(): ...` writes straight to the terminal (progress of long fixtures)."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    if capture is None:
        return nullcontext
    return capture.global_and_fixture_disabled  # type: ignore[no-any-return]


# --- the ratio summary -------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS] = {}
    json_path = config.getoption("benchmark_json", None)
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)  # e.g. bench/results/


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call" and report.passed:
        figures = figures_of(item)
        if figures is not None:
            item.config.stash[RESULTS][figures.case] = figures
    return report


def figures_of(item: pytest.Item) -> Figures | None:
    """The item's benchmark figures, or None if it did not run one (or ran disabled)."""
    fixture: Any = getattr(item, "funcargs", {}).get("benchmark")
    metadata = getattr(fixture, "stats", None)
    if not metadata:
        return None
    info: dict[str, Any] = fixture.extra_info
    return Figures(
        case=info.get("case", item.name),
        baseline=info.get("baseline"),
        median=metadata.stats.median,
        best=metadata.stats.min,
        bytes_per_round=info.get("bytes_per_round"),
        calls_per_round=info.get("calls_per_round"),
    )


def describe(f: Figures) -> str:
    """One summary line: MiB/s (if the case moves bytes) and µs per call, median then best round."""
    throughput = ""
    if f.bytes_per_round:
        throughput = f"{f.bytes_per_round / f.median / MiB:8.1f} MiB/s [{f.bytes_per_round / f.best / MiB:8.1f}]"
    calls = f.calls_per_round or 1
    latency = f"{f.median / calls * 1e6:8.2f} µs/call [{f.best / calls * 1e6:8.2f}]"
    return f"{f.case:<34} {throughput:<27}   {latency}"


def ratios(results: dict[str, Figures]) -> list[tuple[str, str, float, float]]:
    """(case, baseline, median ratio, best ratio) for every case whose baseline also ran."""
    found = []
    for f in results.values():
        base = results.get(f.baseline) if f.baseline else None
        if base is not None:
            found.append((f.case, base.case, base.median / f.median, base.best / f.best))
    return found


def engine_build() -> str:
    """Which engine binary ran, and whether it looks like a cargo debug build (one with debug
    assertions: its UB-check helpers are named `precondition_check`). Editable installs build
    debug by default, and a debug engine is several times slower than a release one."""
    path = Path(sys.modules[PartitionLog.__module__].__file__ or "")
    debug = b"precondition_check" in path.read_bytes()
    return f"engine: {path} ({'DEBUG build: figures understate a release engine' if debug else 'optimised build'})"


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS, {})
    if not results:
        return
    terminalreporter.section("benchmark figures: median [best round]")
    terminalreporter.write_line(engine_build())
    for f in results.values():
        terminalreporter.write_line(describe(f))
    found = ratios(results)
    if found:
        terminalreporter.section("ratios against baselines measured in this run (1.0 = baseline speed)")
        for case, base, median_ratio, best_ratio in found:
            terminalreporter.write_line(f"{case} / {base} = {median_ratio:.2f}   (best rounds: {best_ratio:.2f})")


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    """With --benchmark-json, also store the ratios in the JSON file."""
    output_json["ratios"] = [
        {"case": case, "baseline": base, "median": median_ratio, "best": best_ratio}
        for case, base, median_ratio, best_ratio in ratios(config.stash.get(RESULTS, {}))
    ]
