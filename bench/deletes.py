"""Durable acks while files are deleted on the same disk (issue 17: the tail under load).

    python bench/deletes.py [--gib 2] [--rate-mib 200] [--seconds 8] [--rounds 2]
                            [--out bench/results/deletes.md]

Unlinking a large file frees its blocks at once; on a file system mounted with `discard` (this
machine's) or a thin-provisioned disk the device trims them all before it serves much else, and
every fdatasync waits. bench/compare.py met it as a 0.5 s p99 for durable acks=all at maximum
rate: Kafka's delayed deletion of an earlier workload's topics landed in the run.

Starts `tidelog serve` (durable acks, the default; CPU 0; metrics on) and, per scenario, runs one
bench/load.py producer (confluent-kafka, 1 KiB records, acks=all, linger.ms=1, one partition) at
`--rate-mib` on CPU 1 for about `--seconds`. Two seconds in, one deletion of `--gib` GiB happens
on the broker's file system:

- `none`: nothing (the baseline of the same run);
- `unlink`: this process unlinks a synced file of that size at once: what tidelog did on its
  event loop when a topic was deleted, and what any other program deleting a file does;
- `DeleteTopics`: a topic holding that much on the broker is deleted through the admin API, so
  its files go through the engine's paced deleter (rust/storage/src/deleter.rs).

Per scenario and round: the producer's ack latency (p50, p99, p99.9, max), and from the broker's
histograms the Produce total time p99 and the fdatasync p99 and largest bucket. The broker runs
from whatever `tidelog` this interpreter imports, so PYTHONPATH pointing at another checkout's
`python/` measures that build (the `--label` names it in the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from e2e import RECORD_BYTES, Broker, free_port, pinned, settle_page_cache
from latency_phases import FLUSH, Buckets, phase_key, scrape

HERE = Path(__file__).parent
MiB = 1 << 20
GiB = 1 << 30
EVENT_AT_S = 2.0  # the deletion starts this long after the producer
TOPIC_TIMEOUT_S = 30
FILL_CHUNK = os.urandom(MiB)
SCENARIOS = ("none", "unlink", "DeleteTopics")
CLIENT_CPU = 1  # e2e.Broker pins the broker to CPU 0


def admin(broker: Broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 4})


def create_topic(broker: Broker, topic: str) -> None:
    client = admin(broker)  # alive until the answer is in
    client.create_topics([NewTopic(topic, 1, 1)])[topic].result(TOPIC_TIMEOUT_S)


def delete_topic(broker: Broker, topic: str, client: AdminClient | None = None) -> None:
    client = client or admin(broker)
    client.delete_topics([topic])[topic].result(TOPIC_TIMEOUT_S)


def produce(broker: Broker, topic: str, records: int, extra: list[str]) -> dict[str, float]:
    command = [*pinned(1), sys.executable, str(HERE / "load.py"), "produce", "--bootstrap", broker.bootstrap]
    command += ["--topic", topic, "--records", str(records), "--record-size", str(RECORD_BYTES), *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def fill_topic(broker: Broker, topic: str, gib: float) -> None:
    """A topic holding `gib` GiB (acks=1, as fast as it goes), synced."""
    create_topic(broker, topic)
    produce(broker, topic, int(gib * GiB / RECORD_BYTES), ["--acks", "1"])


def fill_file(path: Path, gib: float) -> None:
    with open(path, "wb") as file:
        for _ in range(int(gib * GiB / MiB)):
            file.write(FILL_CHUNK)
        os.fsync(file.fileno())


def worst_bucket_ms(histogram: Buckets) -> float | None:
    """The upper bound of the highest bucket holding a sample (the histogram's max, coarsely)."""
    previous = 0.0
    worst = None
    for bound, count in sorted(histogram.cumulative.items()):
        if count > previous:
            worst = bound
        previous = count
    return None if worst is None else worst * 1000


def run_scenario(broker: Broker, metrics_url: str, scenario: str, args: argparse.Namespace, round_: int) -> dict:
    tag = f"{scenario.lower()}-{round_}-{time.monotonic_ns()}"
    victim_topic, victim_file = f"victim-{tag}", Path(broker.directory).parent / f"deletes-bench-{tag}.bin"
    if scenario == "DeleteTopics":
        fill_topic(broker, victim_topic, args.gib)
    elif scenario == "unlink":
        fill_file(victim_file, args.gib)
    topic = f"acks-{tag}"
    create_topic(broker, topic)
    settle_page_cache()
    rate = args.rate_mib * MiB // RECORD_BYTES
    event: dict[str, float] = {}
    client = admin(broker)  # connected before the run: the deletion is one request
    client.list_topics(timeout=TOPIC_TIMEOUT_S)

    def delete_meanwhile() -> None:
        time.sleep(EVENT_AT_S)
        started = time.perf_counter()
        if scenario == "unlink":
            victim_file.unlink()
        elif scenario == "DeleteTopics":
            delete_topic(broker, victim_topic, client)
        event["call_ms"] = (time.perf_counter() - started) * 1000

    before = scrape(metrics_url)
    deleter = threading.Thread(target=delete_meanwhile)
    deleter.start()
    extra = ["--acks", "all", "--rate", str(rate), "--linger-ms", "1"]
    result = produce(broker, topic, int(rate * args.seconds), extra)
    deleter.join()
    after = scrape(metrics_url)
    delta = {key: histogram.minus(before.get(key, Buckets())) for key, histogram in after.items()}
    total, flush = delta[phase_key(delta, "totaltime")], delta[FLUSH]
    delete_topic(broker, topic)
    return {
        "scenario": scenario,
        "round": round_,
        "records_per_s": result["records_per_s"],
        "p50": result["p50_ms"],
        "p99": result["p99_ms"],
        "p999": result["p999_ms"],
        "max": result.get("max_ms"),
        "total_p99": (total.quantile(0.99) or 0) * 1000,
        "fsync_p99": (flush.quantile(0.99) or 0) * 1000,
        "fsync_worst": worst_bucket_ms(flush),
        "call_ms": event.get("call_ms"),
    }


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def table(rows: list[dict], label: str) -> str:
    head = "| build | deletion | round | records/s | ack p50 / p99 / p99.9 / max ms | Produce total p99 ms |"
    head += " fsync p99 ms | fsync worst bucket ms | delete call ms |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        acks = " / ".join(fmt(r[k]) for k in ("p50", "p99", "p999", "max"))
        lines.append(
            f"| {label} | {r['scenario']} | {r['round']} | {r['records_per_s']:,.0f} | {acks} | "
            f"{fmt(r['total_p99'])} | {fmt(r['fsync_p99'])} | {fmt(r['fsync_worst'], 1)} | {fmt(r['call_ms'], 0)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=2.0, help="size of the deleted file or topic")
    parser.add_argument("--rate-mib", type=int, default=200, help="the producer's fixed rate")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    # This process's admin calls run beside the producer, not on the broker's CPU (they cost a
    # p99.9 of 20 ms there by themselves).
    os.sched_setaffinity(0, {CLIENT_CPU})
    metrics_port = free_port()
    broker = Broker(durable=True, settings={"tidelog.metrics.listen": f"127.0.0.1:{metrics_port}"})
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    rows = []
    try:
        for round_ in range(1, args.rounds + 1):
            for scenario in args.scenarios.split(","):
                sys.stderr.write(f"round {round_}: {scenario} ...\n")
                rows.append(run_scenario(broker, url, scenario, args, round_))
                sys.stderr.write(f"  p99 {rows[-1]['p99']:.2f} ms, max {fmt(rows[-1]['max'])} ms\n")
    finally:
        broker.stop()
    report = "\n".join(
        [
            "# Durable acks while a file is deleted on the same disk",
            "",
            f"Machine: 2 CPUs, Linux {platform.release()}, Python {platform.python_version()}. "
            f"Broker on CPU 0 (durable acks), one bench/load.py producer on CPU 1: 1 KiB records, acks=all, "
            f"linger.ms=1, {args.rate_mib} MiB/s for {args.seconds:g} s; {args.gib:g} GiB deleted {EVENT_AT_S:g} s in. "
            "Rerun with `python bench/deletes.py`.",
            "",
            table(rows, args.label),
            "",
        ]
    )
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
