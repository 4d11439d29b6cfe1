"""Where a consumer's time goes per fetch, beside Apache Kafka 4.4 in the same run (issue 17's fetch path).

    python bench/fetch_profile.py [--records 1000000] [--rounds 5] [--baseline-pythonpath DIR]
                                  [--out bench/results/fetch_profile.md]

One topic of 1 KiB records (bench/load.py, acks=1, one partition) on each broker, every broker
pinned to CPU 0: tidelog (page-cache acks; reads come from the page cache either way, with its
Prometheus endpoint on), Apache Kafka 4.4 (bench/kafka/reference_broker.py) and, with
`--baseline-pythonpath`, a second tidelog run from another checkout's `python/` directory (an
A/B of two builds in one run). Then kcat and Kafka's ConsumerPerformance (its default fetch size,
1 MiB per partition, as a user runs it) read the whole topic from CPU 1, `--rounds` times each,
the brokers in turn, after one warm-up read each.

Reported per client and broker: the rate (median of the rounds) and its ratio to Kafka's, the
CPU seconds the client and the broker spent per GiB read, and for tidelog, from its metrics, the
fetches answered, bytes per fetch, the broker's CPU per fetch, and the Fetch phases (Kafka's
RequestMetrics: queue + local = received to answer ready, send = answer's first byte to its
last in the socket, total). A consumer that keeps one fetch in flight (both do, per partition)
reads at 1 / (broker's total + transfer + its own work per fetch): the broker's share of that
cycle is what the broker can still give it. No figure here is a test assertion.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compare  # noqa: E402
import e2e  # noqa: E402
from latency_phases import Buckets, phase_key, scrape  # noqa: E402

RECORD_BYTES = 1024
TOPIC = "fetch-profile"
FETCH_REQUEST = "FetchConsumer"  # Kafka's RequestMetrics name for a consumer's Fetch
PHASES = ("responsesendtime", "totaltime")
GiB = 1 << 30
MiB = 1 << 20


@dataclass
class Target:
    """A broker the clients read from: compare.Running plus, for tidelog, its metrics URL."""

    running: compare.Running
    metrics_url: str | None = None


@dataclass
class Round:
    mib_per_s: float
    client_cpu_s: float
    broker_cpu_s: float
    fetch: dict[str, Buckets] = field(default_factory=dict)


@contextmanager
def pythonpath(directory: str | None) -> Iterator[None]:
    """PYTHONPATH for the brokers started inside (the subprocess inherits the environment)."""
    before = os.environ.get("PYTHONPATH")
    if directory:
        os.environ["PYTHONPATH"] = directory
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def start_tidelog(name: str, code: str | None) -> Target:
    """tidelog with page-cache acks and its metrics on, from `code` (a python/ directory) if given."""
    port = e2e.free_port()
    with pythonpath(code):
        broker = e2e.Broker(False, {"tidelog.metrics.listen": f"127.0.0.1:{port}"})
    stream = broker.process.stderr
    assert stream is not None
    os.set_blocking(stream.fileno(), True)
    # Drain the broker's log so a full pipe never stalls it.
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()
    pid = broker.process.pid
    target = compare.Running(
        name, pid, broker.bootstrap, compare.ready_seconds(pid), compare.rss_mib(pid), broker.stop, broker.directory
    )
    return Target(target, f"http://127.0.0.1:{port}/metrics")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def read_once(target: Target, client: Callable[..., dict[str, Any]], records: int, round_number: int) -> Round:
    before = scrape(target.metrics_url, FETCH_REQUEST) if target.metrics_url else {}
    client_before = children_cpu_s()
    if client is compare.consumer_performance:  # a group of its own each time: from the start again
        row = client(target.running, TOPIC, records, RECORD_BYTES, group=f"perf-{round_number}")
    else:
        row = client(target.running, TOPIC, records, RECORD_BYTES)
    client_cpu = children_cpu_s() - client_before
    fetch: dict[str, Buckets] = {}
    if target.metrics_url:
        after = scrape(target.metrics_url, FETCH_REQUEST)
        for phase in PHASES:
            key = phase_key(after, phase, FETCH_REQUEST)
            fetch[phase] = after[key].minus(before.get(key, Buckets()))
    return Round(row["mib_per_s"], client_cpu, row["broker_cpu_s"], fetch)


def ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.3f}"


def table(results: dict[tuple[str, str], list[Round]], brokers: list[str], records: int) -> str:
    lines = [
        "| client | broker | MiB/s (median) | / Kafka | rounds MiB/s | client CPU s/GiB | broker CPU s/GiB "
        "| fetches | KiB/fetch | broker CPU us/fetch | send p50 / p99 ms | total p50 / p99 ms |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    gib = records * RECORD_BYTES / GiB
    for client in compare.CONSUMERS:
        kafka = results.get((client, compare.KAFKA))
        kafka_rate = statistics.median(r.mib_per_s for r in kafka) if kafka else None
        for broker in brokers:
            rounds = results.get((client, broker))
            if not rounds:
                continue
            rate = statistics.median(r.mib_per_s for r in rounds)
            ratio = f"{rate / kafka_rate:.2f}" if kafka_rate and broker != compare.KAFKA else ""
            cells = [
                client,
                broker,
                f"{rate:,.0f}",
                ratio,
                ", ".join(f"{r.mib_per_s:,.0f}" for r in rounds),
                f"{statistics.median(r.client_cpu_s for r in rounds) / gib:.2f}",
                f"{statistics.median(r.broker_cpu_s for r in rounds) / gib:.2f}",
            ]
            if rounds[0].fetch:
                merged = {phase: merge(r.fetch[phase] for r in rounds) for phase in PHASES}
                count = merged["totaltime"].count
                cpu = sum(r.broker_cpu_s for r in rounds)
                cells += [
                    f"{count / len(rounds):,.0f}",
                    f"{records * RECORD_BYTES * len(rounds) / count / 1024:,.0f}" if count else "",
                    f"{cpu / count * 1e6:,.0f}" if count else "",
                    f"{ms(merged['responsesendtime'].quantile(0.5))} / {ms(merged['responsesendtime'].quantile(0.99))}",
                    f"{ms(merged['totaltime'].quantile(0.5))} / {ms(merged['totaltime'].quantile(0.99))}",
                ]
            else:
                cells += [""] * 5
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merge(histograms: Any) -> Buckets:
    out = Buckets()
    for histogram in histograms:
        for bound, count in histogram.cumulative.items():
            out.cumulative[bound] = out.cumulative.get(bound, 0.0) + count
        out.total += histogram.total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-pythonpath", help="another checkout's python/ directory: its broker runs too")
    parser.add_argument("--no-kafka", action="store_true", help="tidelog only")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fetch_profile.md")
    args = parser.parse_args()

    targets: list[Target] = []
    try:
        targets.append(start_tidelog("tidelog", None))
        if args.baseline_pythonpath:
            targets.append(start_tidelog("tidelog baseline", str(Path(args.baseline_pythonpath).resolve())))
        if not args.no_kafka:
            targets.append(Target(compare.start_kafka()))
        for target in targets:
            compare.log(f"{target.running.name}: writing {args.records:,} records of {RECORD_BYTES} B")
            compare.create_topic(target.running, TOPIC)
            compare.load_produce(target.running, TOPIC, args.records, RECORD_BYTES, "1", 0, 5)
            compare.kcat_consume(target.running, TOPIC, args.records, RECORD_BYTES)  # warm-up, not measured
        results: dict[tuple[str, str], list[Round]] = {}
        for round_number in range(args.rounds):
            for client_name, client in compare.CONSUMERS.items():
                if "load.py" in client_name:
                    continue  # confluent-kafka's Python consumer is bound by Python per message
                for running in compare.rotated([t.running for t in targets], round_number):
                    chosen = next(t for t in targets if t.running is running)
                    figures = read_once(chosen, client, args.records, round_number)
                    results.setdefault((client_name, running.name), []).append(figures)
                    compare.log(
                        f"round {round_number + 1}: {client_name} on {running.name}: {figures.mib_per_s:,.0f} MiB/s"
                    )
    finally:
        for target in targets:
            target.running.stop()

    names = [t.running.name for t in targets]
    text = "\n".join(
        [
            "# Fetch profile: kcat and ConsumerPerformance per fetch, beside Kafka 4.4",
            "",
            f"`{' '.join(['.venv/bin/python', 'bench/fetch_profile.py', *sys.argv[1:]])}`: {args.records:,} records of "
            f"{RECORD_BYTES} B on one partition, {args.rounds} rounds; this machine, "
            f"{os.cpu_count()} CPUs, brokers on CPU 0, clients on CPU 1. Throughput is the client's own figure "
            "(ConsumerPerformance: fetch.nMsg.sec, without its group join). CPU per GiB: user + system. "
            "Phases from tidelog's histograms (50 us to 10 s buckets, linear inside one): send is the answer's "
            "first byte to its last in the socket, total is received to sent; a total's p99 holds the long polls "
            "at the log's end. Broker CPU per fetch: user + system (the kernel's copy into the socket included).",
            "",
            table(results, names, args.records),
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
