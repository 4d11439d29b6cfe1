"""Where an acks=all answer's time goes, per request phase, under load (issue: durable-ack latency).

    python bench/latency_phases.py [--seconds 20] [--preallocate-bytes 0,67108864]
                                   [--producers 1,4,16] [--rates 50] [--linger-ms 1] [--kafka]
                                   [--skip max,idempotent] [--out bench/results/latency_phases.md]

Starts `tidelog serve` (durable acks, the default; pinned to CPU 0) once per value of
`tidelog.log.preallocate.bytes`, with its Prometheus endpoint on, and drives it from CPU 1 with
bench/load.py (confluent-kafka, 1 KiB records, acks=all, one partition):

- `N MiB/s` (`--rates`, default 50): one producer at a fixed rate with linger.ms=1, as
  bench/compare.py's half-load rows;
- `max`: one producer as fast as it goes;
- `idempotent xN`: N idempotent producers at once on one partition, as fast as they go. Each
  keeps one Produce in flight (librdkafka's limit, see bench/idempotence.py), so each waits a
  whole fsync per batch; the group commit should answer all of them with one fsync.

Around each scenario it reads the broker's metrics and reports, from the histograms' deltas,
the Produce phases (Kafka's RequestMetrics: queue, local, remote = the wait for durability,
response queue, send, total), the fsync time, and how many appends one fsync released. Quantiles
come from the histogram buckets (linear inside a bucket, as PromQL's histogram_quantile does),
so they are as coarse as the buckets (50 us to 10 s, 1-2.5-5 steps). The client's own ack latency
(produce() to delivery report) is beside them: at `max` it includes librdkafka's queue. With
`--kafka` the fixed rates also run against Apache Kafka 4.4 (page-cache acks, pinned to CPU 0 as
in bench/compare.py): the client's latency there is the baseline of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from e2e import HALF_RATE_MIB, RECORD_BYTES, Broker, free_port, pinned, settle_page_cache
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent / "kafka"))
import reference_broker  # type: ignore[import-not-found]

HERE = Path(__file__).parent
MiB = 1 << 20
PHASES = ("requestqueuetime", "localtime", "remotetime", "responsequeuetime", "responsesendtime", "totaltime")
PHASE_TITLES = ("queue", "local", "remote (fsync wait)", "response queue", "send", "total")
FLUSH = "kafka_log_logflushstats_logflush_seconds"
WAITERS = "tidelog_log_group_commit_waiters"
TOPIC_TIMEOUT_S = 30
# Records per producer per scenario are sized from --seconds at these rates (records/s).
MAX_RATE_GUESS = 400_000
IDEMPOTENT_RATE_GUESS = 150_000
FIXED_RATE_LINGER_MS = 1  # bench/compare.py's fixed-rate producers


@dataclass
class Buckets:
    """One histogram's cumulative buckets (upper bound -> count) and its sum."""

    cumulative: dict[float, float] = field(default_factory=dict)
    total: float = 0.0

    def minus(self, before: Buckets) -> Buckets:
        return Buckets(
            {bound: count - before.cumulative.get(bound, 0.0) for bound, count in self.cumulative.items()},
            self.total - before.total,
        )

    @property
    def count(self) -> float:
        return self.cumulative.get(float("inf"), 0.0)

    def quantile(self, q: float) -> float | None:
        """Linear inside the bucket holding the q-th observation; the last finite bound for +Inf."""
        if self.count <= 0:
            return None
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for bound in sorted(self.cumulative):
            count = self.cumulative[bound]
            if count >= rank:
                if bound == float("inf"):
                    return lower_bound
                inside = count - lower_count
                return lower_bound + (bound - lower_bound) * ((rank - lower_count) / inside if inside else 1.0)
            lower_bound, lower_count = bound, count
        return lower_bound


def scrape(url: str, request_name: str = "Produce") -> dict[str, Buckets]:
    """Histograms by name (with the request label for the request phases: name{Produce})."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict[str, Buckets] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        for sample in family.samples:
            request = sample.labels.get("request")
            if request is not None and request != request_name:
                continue
            name = family.name + (f"{{{request_name}}}" if request else "")
            buckets = out.setdefault(name, Buckets())
            if sample.name.endswith("_bucket"):
                buckets.cumulative[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_sum"):
                buckets.total = sample.value
    return out


def phase_key(histograms: dict[str, Buckets], phase: str, request_name: str = "Produce") -> str:
    for name in histograms:
        if name.endswith(f"_{phase}_seconds{{{request_name}}}"):
            return name
    raise KeyError(phase)


@dataclass
class Row:
    config: str
    scenario: str
    records_per_s: float
    client_p50_ms: float | None
    client_p99_ms: float | None
    phases: dict[str, tuple[float | None, float | None]]
    flush_p50_ms: float | None
    flush_p99_ms: float | None
    waiters_per_fsync: float | None
    fsyncs: float | None


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


class KafkaBroker:
    """Apache Kafka 4.4 (bench/kafka/reference_broker.py, page-cache acks), pinned to CPU 0 as
    bench/compare.py pins it: the fixed rates' baseline in the same run."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="kafka-phases-")
        self.port = reference_broker.free_port()
        everything = os.sched_getaffinity(0)
        if pinned(0):
            os.sched_setaffinity(0, {0})  # the JVM and its threads inherit CPU 0
        try:
            self.process = reference_broker.start(self.directory, self.port)
        finally:
            os.sched_setaffinity(0, everything)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        reference_broker.stop(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


def run_producers(
    broker: Broker | KafkaBroker, topic: str, count: int, records: int, extra: list[str]
) -> list[dict[str, object]]:
    """`count` bench/load.py producers at once on CPU 1; their JSON results."""
    command = [*pinned(1), sys.executable, str(HERE / "load.py"), "produce", "--bootstrap", broker.bootstrap]
    command += ["--topic", topic, "--records", str(records), "--record-size", str(RECORD_BYTES), "--acks", "all"]
    processes = [
        subprocess.Popen([*command, *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for _ in range(count)
    ]
    results = []
    for process in processes:
        stdout, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"load.py failed ({process.returncode})")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


def scenario(
    broker: Broker | KafkaBroker,
    metrics_url: str | None,
    config: str,
    name: str,
    producers: int,
    records: int,
    extra: list[str],
) -> Row:
    """One scenario; without `metrics_url` (Kafka) only the client's side."""
    topic = f"phases-{name.replace(' ', '-').replace('/', '')}-{time.monotonic_ns()}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(TOPIC_TIMEOUT_S)
    settle_page_cache()
    sys.stderr.write(f"{config}: {name} ...\n")
    before = scrape(metrics_url) if metrics_url else {}
    started = time.perf_counter()
    results = run_producers(broker, topic, producers, records, extra)
    seconds = time.perf_counter() - started
    after = scrape(metrics_url) if metrics_url else {}
    delta = {key: histogram.minus(before.get(key, Buckets())) for key, histogram in after.items()}
    phases: dict[str, tuple[float | None, float | None]] = {}
    for phase in PHASES:
        histogram = delta[phase_key(delta, phase)] if delta else Buckets()
        phases[phase] = (ms(histogram.quantile(0.5)), ms(histogram.quantile(0.99)))
    flush, waiters = delta.get(FLUSH, Buckets()), delta.get(WAITERS, Buckets())
    delivered = sum(float(r["records"]) for r in results)  # type: ignore[arg-type]
    p50s = [float(r["p50_ms"]) for r in results if r.get("p50_ms") is not None]  # type: ignore[arg-type]
    p99s = [float(r["p99_ms"]) for r in results if r.get("p99_ms") is not None]  # type: ignore[arg-type]
    return Row(
        config,
        name,
        # Parallel producers: the sum over the wall time of the slowest (they start together).
        delivered / seconds if producers > 1 else float(results[0]["records_per_s"]),  # type: ignore[arg-type]
        statistics.median(p50s) if p50s else None,
        max(p99s) if p99s else None,
        phases,
        ms(flush.quantile(0.5)),
        ms(flush.quantile(0.99)),
        waiters.total / waiters.count if waiters.count else None,
        flush.count if metrics_url else None,
    )


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def table(rows: list[Row]) -> str:
    head = ["config", "scenario", "records/s", "client p50 / p99 ms"]
    head += [f"{title} p50 / p99 ms" for title in PHASE_TITLES]
    head += ["fsync p50 / p99 ms", "appends per fsync", "fsyncs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for row in rows:
        cells = [row.config, row.scenario, f"{row.records_per_s:,.0f}"]
        cells.append(f"{fmt(row.client_p50_ms)} / {fmt(row.client_p99_ms)}")
        cells += [f"{fmt(p50)} / {fmt(p99)}" for p50, p99 in (row.phases[p] for p in PHASES)]
        cells.append(f"{fmt(row.flush_p50_ms, 3)} / {fmt(row.flush_p99_ms, 3)}")
        cells += [fmt(row.waiters_per_fsync, 1), fmt(row.fsyncs, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="about how long each scenario runs")
    parser.add_argument("--preallocate-bytes", default="0,67108864", help="broker configs to compare")
    parser.add_argument("--producers", default="1,4,16", help="idempotent producer counts")
    parser.add_argument("--rates", default=str(HALF_RATE_MIB), help="fixed rates in MiB/s, one scenario each")
    parser.add_argument(
        "--linger-ms", type=float, default=FIXED_RATE_LINGER_MS, help="linger.ms at a fixed rate (compare.py's)"
    )
    parser.add_argument("--skip", default="", help="scenarios to leave out: max, idempotent")
    parser.add_argument("--kafka", action="store_true", help="also the fixed rates against Apache Kafka 4.4")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows: list[Row] = []
    skip = set(filter(None, args.skip.split(",")))
    for preallocate in (int(v) for v in args.preallocate_bytes.split(",")):
        config = f"preallocate {preallocate >> 20} MiB" if preallocate else "no preallocation"
        metrics_port = free_port()
        broker = Broker(
            durable=True,
            settings={
                "tidelog.metrics.listen": f"127.0.0.1:{metrics_port}",
                "tidelog.log.preallocate.bytes": str(preallocate),
            },
        )
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        try:
            for mib in (int(v) for v in args.rates.split(",")):
                rate = mib * MiB // RECORD_BYTES
                extra = ["--rate", str(rate), "--linger-ms", str(args.linger_ms)]
                rows.append(scenario(broker, url, config, f"{mib} MiB/s", 1, int(rate * args.seconds), extra))
            if "max" not in skip:
                rows.append(scenario(broker, url, config, "max", 1, int(MAX_RATE_GUESS * args.seconds), []))
            for count in () if "idempotent" in skip else (int(v) for v in args.producers.split(",")):
                records = int(IDEMPOTENT_RATE_GUESS * args.seconds / count)
                rows.append(scenario(broker, url, config, f"idempotent x{count}", count, records, ["--idempotence"]))
        finally:
            broker.stop()
    if args.kafka:
        kafka = KafkaBroker()
        try:
            for mib in (int(v) for v in args.rates.split(",")):
                rate = mib * MiB // RECORD_BYTES
                extra = ["--rate", str(rate), "--linger-ms", str(args.linger_ms)]
                name = f"{mib} MiB/s"
                rows.append(scenario(kafka, None, "Apache Kafka 4.4", name, 1, int(rate * args.seconds), extra))
        finally:
            kafka.stop()
    report = "\n".join(
        [
            "# Produce latency per request phase (durable acks=all, 1 KiB, one partition)",
            "",
            f"Machine: 2 CPUs, Linux {platform.release()}, Python {platform.python_version()}. Broker on CPU 0, "
            "producers (bench/load.py, confluent-kafka) on CPU 1. Phases from the broker's Prometheus "
            "histograms (bucket-interpolated), client latency from librdkafka's delivery reports "
            "(median of the producers' p50, largest p99). Rerun with `python bench/latency_phases.py`.",
            "",
            table(rows),
            "",
        ]
    )
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
