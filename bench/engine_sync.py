"""The engine's durable append: the latency of `PartitionLog.flush` (the group commit's
fdatasync) after each append, with the active segment pre-zeroed ahead (`preallocate_bytes`) or
growing with each append (0, as Kafka does), in the same run. Issue 17's first target: p50 <= 0.2
ms and p99 <= 0.8 ms after an append of 1 KiB.

    .venv/bin/python bench/engine_sync.py [--writes 20000] [--sizes 1024,16384] [--steps 0,16,64]

Each case appends one batch and flushes it, `--writes` times, into a fresh log in the system's
temp directory (deleted after); the cases run `--repeats` times in rotated order, and the table
gives the median of the repeats (p99 spread in brackets). Results: bench/results/engine_sync.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import build_batch
from tidelog.storage import PartitionLog, log_config_for

MIB = 1 << 20
SEGMENT_BYTES = 1 << 30
# Zero writes the engine's thread has not finished yet are waited for before timing starts.
SETTLE_S = 0.5
QUANTILES = (0.5, 0.9, 0.99, 0.999)


def quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_case(root: Path, size: int, step_mib: int, writes: int) -> list[float]:
    """Flush latencies in µs of `writes` appends of one `size`-byte record each."""
    directory = Path(tempfile.mkdtemp(dir=root))
    config = log_config_for(TopicConfig(segment_bytes=SEGMENT_BYTES), preallocate_bytes=step_mib * MIB)
    log, _ = PartitionLog.open(directory, config)
    now = time.time_ns() // 1_000_000
    batch = build_batch([(now, None, b"x" * size, [])])
    time.sleep(SETTLE_S)
    latencies = []
    try:
        for _ in range(writes // 100):  # warm-up
            log.append(batch, now)
            log.flush()
        for _ in range(writes):
            log.append(batch, now)
            started = time.perf_counter_ns()
            log.flush()
            latencies.append((time.perf_counter_ns() - started) / 1000)
    finally:
        log.close()
        shutil.rmtree(directory, ignore_errors=True)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--sizes", default="1024,16384")
    parser.add_argument("--steps", default="0,16,64", help="pre-zeroed MiB ahead; 0: growing file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "engine_sync.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    steps = [int(s) for s in args.steps.split(",")]
    cases = [(size, step) for size in sizes for step in steps]
    root = Path(tempfile.mkdtemp(prefix="tidelog-engine-sync-"))
    results: dict[tuple[int, int], list[dict[str, float]]] = {case: [] for case in cases}
    try:
        for repeat in range(args.repeats):
            order = cases[repeat % len(cases) :] + cases[: repeat % len(cases)]
            for size, step in order:
                started = time.monotonic()
                latencies = sorted(run_case(root, size, step, args.writes))
                figures = {f"p{q * 100:g}": quantile(latencies, q) for q in QUANTILES}
                figures["max"] = latencies[-1]
                figures["per_s"] = len(latencies) / (sum(latencies) / 1e6)
                results[(size, step)].append(figures)
                print(
                    f"repeat {repeat + 1}/{args.repeats} size {size} step {step} MiB: p50 {figures['p50']:.0f} "
                    f"p99 {figures['p99']:.0f} µs ({time.monotonic() - started:.1f} s)",
                    file=sys.stderr,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = [
        "# Engine flush latency after an append: pre-zeroed vs growing segments",
        "",
        f"`bench/engine_sync.py --writes {args.writes} --sizes {args.sizes} --steps {args.steps} "
        f"--repeats {args.repeats}`: one append then `PartitionLog.flush` (fdatasync), medians of the repeats,",
        "µs. Step 0 is today's default (the file grows with each append, as in Kafka).",
        "",
        "| record | pre-zeroed ahead | p50 | p90 | p99 [min–max] | p99.9 | max | flushes/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, step in cases:
        runs = results[(size, step)]

        def median(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        p99s = [r["p99"] for r in runs]
        lines.append(
            f"| {size:,} B | {step} MiB | {median('p50'):,.0f} | {median('p90'):,.0f} | "
            f"**{median('p99'):,.0f}** [{min(p99s):,.0f}–{max(p99s):,.0f}] | {median('p99.9'):,.0f} | "
            f"{median('max'):,.0f} | {median('per_s'):,.0f} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.write_text(table)


if __name__ == "__main__":
    main()
