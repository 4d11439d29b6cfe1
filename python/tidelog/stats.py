"""Counters and histograms the broker keeps as it works, read by the metrics endpoint.

They are plain Python numbers owned by the event loop's thread (the endpoint's thread reads
them through the loop, `tidelog.server.metrics`), so counting costs what an integer addition
costs. prometheus-client does the exposition format and the HTTP side; its own instruments take
a lock on every update: on this machine a labelled `Histogram.labels(..).observe()` took 1.9 µs,
a histogram child's `observe()` 0.74 µs and a counter child's `inc()` 0.36 µs, against 0.17 µs
for `Histogram.observe` here and 0.09 µs for a dict counter, and a request makes seven updates
(`python bench/metrics_cost.py` reruns the comparison).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

# Request and fsync latencies, in seconds (Prometheus's unit): 50 µs to 10 s.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# How many waiters (acks=all requests' partitions) one group-commit fsync released.
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    """Cumulative-at-read buckets (`bounds` are upper bounds; one more bucket for +Inf), the
    sum and the count of what was observed."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound as Prometheus writes it, observations at or below it), +Inf last."""
        out = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
        return out

    @classmethod
    def merged(cls, histograms: Iterable[Histogram], bounds: Sequence[float] = LATENCY_BUCKETS_S) -> Histogram:
        """One histogram of everything the given ones (all with `bounds`) observed."""
        merged = cls(bounds)
        for histogram in histograms:
            assert histogram.bounds == merged.bounds
            for i, count in enumerate(histogram.counts):
                merged.counts[i] += count
            merged.sum += histogram.sum
        return merged
