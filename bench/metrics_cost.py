"""What one metric update costs: prometheus-client's instruments against tidelog.stats's.

    .venv/bin/python bench/metrics_cost.py

The broker updates five or six numbers per request (a request counter, the histograms of its
phases, error counts) on the event loop; this measures each way of doing it in the same run and
prints a table (microseconds per update; the ratio is what the choice in tidelog/stats.py rests
on). No figure here is a test assertion.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "python"))

from prometheus_client import CollectorRegistry, Counter, Histogram

from tidelog.stats import Histogram as LoopHistogram

UPDATES = 200_000


def per_update_us(update: object) -> float:
    best = min(timeit.repeat(update, number=UPDATES, repeat=5))  # type: ignore[arg-type]
    return best / UPDATES * 1e6


def main() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("latency_seconds", "a request phase", ["request"], registry=registry)
    counter = Counter("requests", "requests", ["request", "version"], registry=registry)
    child = histogram.labels("Produce")
    counter_child = counter.labels("Produce", "10")
    ours = LoopHistogram()
    counts: dict[tuple[str, int], int] = {}

    def count() -> None:
        key = ("Produce", 10)
        counts[key] = counts.get(key, 0) + 1

    rows = [
        (
            "prometheus-client Histogram.labels(..).observe",
            per_update_us(lambda: histogram.labels("Produce").observe(0.001)),
        ),
        ("prometheus-client histogram child .observe", per_update_us(lambda: child.observe(0.001))),
        ("prometheus-client counter child .inc", per_update_us(lambda: counter_child.inc())),
        ("tidelog.stats Histogram.observe", per_update_us(lambda: ours.observe(0.001))),
        ("dict counter (tidelog's request count)", per_update_us(count)),
    ]
    baseline = rows[3][1]
    print("| update | µs | × tidelog.stats Histogram.observe |\n|---|---:|---:|")
    for name, us in rows:
        print(f"| {name} | {us:.3f} | {us / baseline:.1f} |")


if __name__ == "__main__":
    main()
