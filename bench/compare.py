"""tidelog against Apache Kafka 4.4 on this machine, same workloads, alternating brokers.

    python bench/compare.py [--quick] [--out-dir bench/results]

Starts three brokers pinned to CPU 0, each on a fresh data directory, and keeps them up for the
whole run: a single-node KRaft Kafka (bench/kafka/reference_broker.py, jars fetched by
bench/kafka/fetch.sh), tidelog with durable acks (the default) and tidelog with page-cache acks
(tidelog.flush.before.ack=false, Kafka's behaviour). Clients run pinned to CPU 1.

Workloads, for records of 100 B and 1 KiB, acks=1 and acks=all:
- produce at maximum rate, with Kafka's ProducerPerformance (Java) and bench/load.py
  (confluent-kafka), against each broker;
- produce at a fixed rate of half the maximum that client measured on that broker for that case
  (linger.ms=1): latency under load rather than queueing;
- consume (at most 1M records of) the acks=1 topic from the page cache with bench/load.py (assign, no group), kcat
  and Kafka's ConsumerPerformance (which subscribes through a consumer group) against every broker.

For each workload and client the broker order rotates, so no broker always goes first. The page
cache is settled (sync, and as root drop_caches) before each produce run. Finished workloads'
topics are deleted, and every broker's deletions finish before the next workload (Kafka's
file.delete.delay.ms is 1 s here; its 60 s default landed them in other brokers' runs). Per
row: records/s, MiB/s, latency percentiles (as each client measures them), the broker's CPU seconds during the run (all
threads, from /proc/<pid>/stat), its RSS after the run; start-to-ready time once per broker.
Writes compare.md and compare.png into --out-dir; progress goes to stderr. Default run: 1M records
of 1 KiB and 3M of 100 B per maximum-rate run; --quick runs a tenth of that.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "kafka"))

import e2e  # noqa: E402
import reference_broker as rb  # type: ignore[import-not-found]  # noqa: E402

MiB = 1 << 20
CLASSPATH = rb.CLASSPATH
KAFKA, DURABLE, PAGE_CACHE = "Kafka 4.4", "tidelog durable", "tidelog page-cache"
BROKER_NAMES = (KAFKA, DURABLE, PAGE_CACHE)
FIXED_RATE_SECONDS = 5.0  # length of a fixed-rate run (capped at the max-rate record count)
# Kafka deletes a deleted topic's files this long after (60 s by default), tidelog at once in the
# background. Either landing in another broker's run stalls that broker's fsyncs (a 0.5 s p99
# for durable acks=all, bench/results/deletes.md), so deletions finish before the next workload.
KAFKA_SETTINGS = {"file.delete.delay.ms": "1000"}
DELETIONS_WAIT_S = 120.0
DELETING = ("-delete", ".deleted")  # the names of both brokers' files and directories on their way out
STARTED = time.monotonic()


def log(message: str) -> None:
    sys.stderr.write(f"[{time.monotonic() - STARTED:6.0f}s] {message}\n")
    sys.stderr.flush()


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def proc_stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ready_seconds(pid: int) -> float:
    """Process start (fork, as the kernel records it) to now; call right after readiness."""
    return uptime() - int(proc_stat(pid)[19]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Running:
    name: str
    pid: int
    bootstrap: str
    ready_s: float
    idle_rss_mib: float
    stop: Callable[[], None]
    directory: str  # its data directory
    topics: list[str] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        return e2e.process_cpu_seconds(self.pid)


def start_kafka() -> Running:
    directory = tempfile.mkdtemp(prefix="kafka-compare-")
    port = e2e.free_port()
    rb.fetch()
    everything = os.sched_getaffinity(0)
    if e2e.pinned(0):
        os.sched_setaffinity(0, {0})  # the JVM (and every thread it starts) inherits CPU 0
    try:
        proc = rb.start(directory, port, settings=KAFKA_SETTINGS)
        ready = ready_seconds(proc.pid)
    finally:
        os.sched_setaffinity(0, everything)

    def stop() -> None:
        rb.stop(proc)
        shutil.rmtree(directory, ignore_errors=True)

    return Running(KAFKA, proc.pid, f"127.0.0.1:{port}", ready, rss_mib(proc.pid), stop, directory)


def start_tidelog(durable: bool) -> Running:
    broker = e2e.Broker(durable)
    ready = ready_seconds(broker.process.pid)
    stream = broker.process.stderr
    assert stream is not None
    os.set_blocking(stream.fileno(), True)
    # Drain the broker's log so a full pipe never stalls it.
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()
    name = DURABLE if durable else PAGE_CACHE
    pid = broker.process.pid
    return Running(name, pid, broker.bootstrap, ready, rss_mib(pid), broker.stop, broker.directory)


# --- topics --------------------------------------------------------------------------------------


def create_topic(broker: Running, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 4})
    for future in admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=30).values():
        future.result(30)
    broker.topics.append(topic)


def delete_topics(broker: Running, keep: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    from confluent_kafka.admin import AdminClient

    doomed = [t for t in broker.topics if t not in keep]
    if not doomed:
        return
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 4})
    for topic, future in admin.delete_topics(doomed, request_timeout=30).items():
        try:
            future.result(30)
        except Exception as error:
            log(f"   could not delete {topic} on {broker.name}: {error}")
    broker.topics = [t for t in broker.topics if t in keep]


def deletions_pending(broker: Running) -> bool:
    return any(name.endswith(DELETING) for _, dirs, files in os.walk(broker.directory) for name in dirs + files)


def wait_for_deletions(brokers: list[Running]) -> None:
    """Until no broker has a deletion in progress (see KAFKA_SETTINGS)."""
    deadline = time.monotonic() + DELETIONS_WAIT_S
    while any(deletions_pending(broker) for broker in brokers):
        if time.monotonic() > deadline:
            log(f"   deletions still in progress after {DELETIONS_WAIT_S:.0f} s; going on")
            return
        time.sleep(0.5)


# --- clients -------------------------------------------------------------------------------------

PERF_LINE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency"
    r"(?:, ([\d.]+) ms 50th, ([\d.]+) ms 95th, ([\d.]+) ms 99th, ([\d.]+) ms 99.9th)?"
)


def measured(broker: Running, command: list[str]) -> tuple[str, float, float]:
    before = broker.cpu_seconds()
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    cpu = broker.cpu_seconds() - before
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        causes = [line for line in lines if "Exception" in line and not line.lstrip().startswith("at ")]
        raise RuntimeError(f"exit {result.returncode}: {(causes or lines or [''])[-1].strip()}")
    return result.stdout, cpu, seconds


def producer_performance(
    broker: Running,
    topic: str,
    records: int,
    size: int,
    acks: str,
    rate: float,
    linger_ms: int,
    transaction: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """One ProducerPerformance run; with `transaction` (transactional id, transaction duration
    in ms) a transactional one, which is idempotent as every transactional producer is."""
    transactional = (
        ["--transactional-id", transaction[0], "--transaction-duration-ms", str(transaction[1])] if transaction else []
    )
    command = [
        *e2e.pinned(1),
        rb.java(),
        "-Xmx1g",
        "-cp",
        CLASSPATH,
        "org.apache.kafka.tools.ProducerPerformance",
        "--bootstrap-server",
        broker.bootstrap,
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(size),
        "--throughput",
        str(int(rate) if rate else -1),
        *transactional,
        # One --command-property with every setting: repeating the flag keeps only the last one.
        "--command-property",
        f"acks={acks}",
        *([] if transaction else ["enable.idempotence=false"]),
        f"linger.ms={linger_ms}",
        "batch.size=262144",
    ]
    stdout, cpu, _ = measured(broker, command)
    match = None
    for line in stdout.splitlines():
        match = PERF_LINE.search(line) or match
    if match is None:
        raise RuntimeError(f"no summary line in ProducerPerformance output: {stdout[-300:]!r}")
    sent, per_s = int(match.group(1)), float(match.group(2))
    row = {"records": sent, "records_per_s": per_s, "mib_per_s": per_s * size / MiB, "broker_cpu_s": cpu}
    if match.group(6):
        row.update(p50_ms=float(match.group(6)), p99_ms=float(match.group(8)), p999_ms=float(match.group(9)))
    return row


def load_produce(
    broker: Running, topic: str, records: int, size: int, acks: str, rate: float, linger_ms: int
) -> dict[str, Any]:
    command = [
        *e2e.pinned(1),
        sys.executable,
        str(HERE / "load.py"),
        "produce",
        "--bootstrap",
        broker.bootstrap,
        "--topic",
        topic,
        "--records",
        str(records),
        "--record-size",
        str(size),
        "--acks",
        acks,
        "--linger-ms",
        str(linger_ms),
    ] + (["--rate", str(rate)] if rate else [])
    stdout, cpu, _ = measured(broker, command)
    row: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    row["broker_cpu_s"] = cpu
    if row.get("errors"):
        raise RuntimeError(f"{row['errors']} delivery errors")
    return row


def load_consume(broker: Running, topic: str, records: int, size: int) -> dict[str, Any]:
    command = [
        *e2e.pinned(1),
        sys.executable,
        str(HERE / "load.py"),
        "consume",
        "--bootstrap",
        broker.bootstrap,
        "--topic",
        topic,
        "--records",
        str(records),
        "--record-size",
        str(size),
    ]
    stdout, cpu, _ = measured(broker, command)
    row: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    row["broker_cpu_s"] = cpu
    return row


def kcat_consume(broker: Running, topic: str, records: int, size: int) -> dict[str, Any]:
    command = [
        *e2e.pinned(1),
        "kcat",
        "-b",
        broker.bootstrap,
        "-C",
        "-t",
        topic,
        "-p",
        "0",
        "-o",
        "beginning",
        "-c",
        str(records),
        "-e",
        "-q",
        "-f",
        "%p",
        "-X",
        "fetch.max.bytes=67108864",
        "-X",
        "max.partition.fetch.bytes=16777216",
    ]
    stdout, cpu, seconds = measured(broker, command)
    count = len(stdout)  # one character (the partition, 0) per record
    if count < records:
        raise RuntimeError(f"kcat read {count} of {records} records")
    return {"records_per_s": count / seconds, "mib_per_s": count * size / seconds / MiB, "broker_cpu_s": cpu}


def consumer_performance(broker: Running, topic: str, records: int, size: int, group: str = "") -> dict[str, Any]:
    """One ConsumerPerformance read from the topic's start: a new group (`group`, by default one
    per topic) has no committed offsets."""
    command = [
        *e2e.pinned(1),
        rb.java(),
        "-Xmx1g",
        "-cp",
        CLASSPATH,
        "org.apache.kafka.tools.ConsumerPerformance",
        "--bootstrap-server",
        broker.bootstrap,
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--group",
        group or f"perf-{topic}",
        "--timeout",
        "60000",
        "--command-property",
        "fetch.max.bytes=67108864",
        "--command-property",
        "max.partition.fetch.bytes=16777216",
    ]
    stdout, cpu, _ = measured(broker, command)
    lines = [line for line in stdout.splitlines() if "," in line]
    header, values = next(csv.reader(io.StringIO(lines[-2]))), next(csv.reader(io.StringIO(lines[-1])))
    data = {h.strip(): v.strip() for h, v in zip(header, values, strict=True)}
    per_s = float(data["fetch.nMsg.sec"])  # excludes the group join, which MB.sec includes
    return {"records_per_s": per_s, "mib_per_s": per_s * size / MiB, "broker_cpu_s": cpu}


PRODUCERS = {"ProducerPerformance (Java)": producer_performance, "load.py (confluent-kafka)": load_produce}
CONSUMERS = {
    "load.py (confluent-kafka)": load_consume,
    "kcat": kcat_consume,
    "ConsumerPerformance (Java, group)": consumer_performance,
}


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    client: str
    broker: str
    figures: dict[str, Any]
    error: str = ""


def rotated(brokers: list[Running], turn: int) -> list[Running]:
    k = turn % len(brokers)
    return brokers[k:] + brokers[:k]


def run_one(
    rows: list[Row], broker: Running, workload: str, client: str, action: Callable[[], dict[str, Any]]
) -> dict[str, Any] | None:
    log(f"   {workload} | {client} | {broker.name}")
    try:
        figures = action()
    except Exception as error:
        log(f"   FAILED: {error}")
        rows.append(Row(workload, client, broker.name, {}, str(error)[:200]))
        return None
    figures["rss_mib"] = rss_mib(broker.pid)
    rows.append(Row(workload, client, broker.name, figures))
    extra = f", p99 {figures['p99_ms']:.1f} ms" if figures.get("p99_ms") is not None else ""
    log(
        f"   -> {figures['records_per_s']:,.0f} rec/s, {figures['mib_per_s']:.1f} MiB/s{extra}, "
        f"broker CPU {figures['broker_cpu_s']:.1f} s"
    )
    return figures


def run(brokers: list[Running], quick: bool) -> list[Row]:
    rows: list[Row] = []
    scale = 10 if quick else 1
    turn = 0
    consume_records = 1_000_000 // scale  # consumers are client-bound: read at most this many records
    for size, records in ((100, 3_000_000 // scale), (1024, 1_000_000 // scale)):
        maxima: dict[tuple[str, str, str], float] = {}
        consume_topic = {}
        for acks in ("1", "all"):
            for client, produce in PRODUCERS.items():
                workload = f"produce {size} B acks={acks} max"
                log(f"== {workload}, {client}")
                for broker in rotated(brokers, turn):
                    topic = f"c{turn}-{size}-{acks}-max-{'java' if 'Java' in client else 'py'}"
                    create_topic(broker, topic)
                    e2e.settle_page_cache()
                    figures = run_one(
                        rows,
                        broker,
                        workload,
                        client,
                        lambda: produce(broker, topic, records, size, acks, 0, 5),  # noqa: B023 (called at once)
                    )
                    if figures:
                        maxima[(broker.name, acks, client)] = figures["records_per_s"]
                        if acks == "1" and "load.py" in client:
                            consume_topic[broker.name] = (topic, figures["records"])
                turn += 1
            for client, produce in PRODUCERS.items():
                workload = f"produce {size} B acks={acks} half of max"
                log(f"== {workload}, {client}")
                for broker in rotated(brokers, turn):
                    best = maxima.get((broker.name, acks, client))
                    if not best:
                        continue
                    rate = best / 2
                    count = int(min(records, rate * FIXED_RATE_SECONDS / (3 if quick else 1)))
                    topic = f"c{turn}-{size}-{acks}-half-{'java' if 'Java' in client else 'py'}"
                    create_topic(broker, topic)
                    e2e.settle_page_cache()
                    figures = run_one(
                        rows,
                        broker,
                        workload,
                        client,
                        lambda: produce(broker, topic, count, size, acks, rate, 1),  # noqa: B023 (called at once)
                    )
                    if figures:
                        figures["rate"] = rate
                turn += 1
            for broker in brokers:  # disk space: keep only the topic the consumers read
                delete_topics(broker, keep={consume_topic.get(broker.name, ("", 0))[0]})
            wait_for_deletions(brokers)
        # Consume from the page cache: warm each broker's topic once (not measured), no settling.
        workload = f"consume {size} B"
        for broker in brokers:
            if broker.name in consume_topic:
                topic, count = consume_topic[broker.name]
                try:
                    kcat_consume(broker, topic, min(count, consume_records), size)
                except Exception as error:
                    log(f"   warm-up read failed on {broker.name}: {error}")
        for client, consume in CONSUMERS.items():
            log(f"== {workload}, {client}")
            for broker in rotated(brokers, turn):
                if broker.name not in consume_topic:
                    continue
                topic, count = consume_topic[broker.name]
                count = min(count, consume_records)
                run_one(rows, broker, workload, client, lambda: consume(broker, topic, count, size))  # noqa: B023
            turn += 1
        for broker in brokers:
            delete_topics(broker)
        wait_for_deletions(brokers)
    return rows


# --- report --------------------------------------------------------------------------------------


def fmt(value: object, digits: int = 1) -> str:
    return "" if value is None else f"{float(value):,.{digits}f}"  # type: ignore[arg-type]


def report(rows: list[Row], brokers: list[Running], quick: bool, elapsed: float) -> str:
    kafka = {(r.workload, r.client): r.figures for r in rows if r.broker == KAFKA and r.figures}
    lines = [
        "| workload | client | broker | records/s | MiB/s | p50 ms | p99 ms | p99.9 ms | broker CPU s | broker RSS MiB "
        "| throughput tidelog/Kafka | p99 tidelog/Kafka |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        f = row.figures
        if row.error:
            lines.append(
                f"| {row.workload} | {row.client} | {row.broker} | failed: {row.error.replace('|', '/')} |||||||||"
            )
            continue
        ratio = p99_ratio = ""
        reference = kafka.get((row.workload, row.client))
        if row.broker != KAFKA and reference:
            ratio = f"{f['records_per_s'] / reference['records_per_s']:.2f}"
            if f.get("p99_ms") is not None and reference.get("p99_ms"):
                p99_ratio = f"{f['p99_ms'] / reference['p99_ms']:.2f}"
        workload = row.workload + (f" ({f['rate']:,.0f}/s)" if f.get("rate") else "")
        lines.append(
            f"| {workload} | {row.client} | {row.broker} | {fmt(f['records_per_s'], 0)} | {fmt(f['mib_per_s'])} "
            f"| {fmt(f.get('p50_ms'), 2)} | {fmt(f.get('p99_ms'), 2)} | {fmt(f.get('p999_ms'), 2)} "
            f"| {fmt(f['broker_cpu_s'])} | {fmt(f['rss_mib'], 0)} | {ratio} | {p99_ratio} |"
        )
    starts = ["| broker | start to ready s | RSS when ready MiB |", "|---|---:|---:|"]
    starts += [f"| {b.name} | {b.ready_s:.2f} | {b.idle_rss_mib:.0f} |" for b in brokers]
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / (1 << 20)
    java_version = subprocess.run([rb.java(), "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    return f"""# tidelog vs Apache Kafka 4.4

Machine: {platform.node()}, {os.cpu_count()} CPUs ({cpu}), {memory:.0f} GiB RAM, Linux {platform.release()},
Python {platform.python_version()}, {java_version}. All three brokers run for the whole comparison, each
on a fresh data directory, pinned to CPU 0 (the idle ones stay up meanwhile); every client runs pinned to CPU 1.
Kafka is a single-node KRaft broker+controller with its defaults (`-Xmx1g`, G1; no fsync before acks, so
acks=all with one replica is acks=1), except `file.delete.delay.ms=1000`: the topics of finished workloads
are deleted, and every broker's deletions are done before the next workload starts. tidelog "durable"
fsyncs before acking (its default), "page-cache" acks from the page cache like Kafka
(`tidelog.flush.before.ack=false`).
{"`--quick` run (a tenth of the records). " if quick else ""}Whole run {elapsed / 60:.1f} min;
rerun with `.venv/bin/python bench/compare.py`.

- Producers: `linger.ms=5` at maximum rate, `linger.ms=1` at the fixed rate (half of the maximum that client
  reached on that broker in that case, for at most {FIXED_RATE_SECONDS / (3 if quick else 1):.1f} s),
  `batch.size=262144`, idempotence off (plain producers; idempotent against plain is bench/idempotence.py).
  One partition per topic, created before each run.
- Latency: ProducerPerformance's (send to callback, whole milliseconds), load.py's (librdkafka's `produce()` to
  delivery report). At maximum rate it is mostly client-side queueing; the fixed-rate rows are the latency ones.
- Consumers read (at most the first 1M records of) the acks=1 topic load.py wrote, from the page cache
  (read once first, not measured).
  ConsumerPerformance joins a consumer group (both brokers: group.initial.rebalance.delay.ms=0); its rate is
  `fetch.nMsg.sec` (without the group join).
- Broker CPU s: user+system time of the broker process (all threads) during the run, from `/proc/<pid>/stat`.
  RSS: `VmRSS` after the run. Ratios: tidelog row / the Kafka row of the same workload and client
  (throughput: higher is better for tidelog; p99: lower is better).

{chr(10).join(lines)}

Broker start (Popen to serving, from the kernel's process start time; Kafka's readiness is polled every 0.2 s):

{chr(10).join(starts)}

![MiB/s per workload and broker](compare.png)
"""


def chart(rows: list[Row], path: Path) -> None:
    """Grouped bars of MiB/s at maximum rate (and consume), one panel per record size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = {(r.workload, r.client, r.broker): r.figures.get("mib_per_s", 0) for r in rows}
    sizes = sorted({int(r.workload.split()[1]) for r in rows})
    figure, panels = plt.subplots(1, len(sizes), figsize=(14, 6), squeeze=False)
    width = 0.27
    for panel, size in zip(panels[0], sizes, strict=True):
        groups: list[tuple[str, str]] = []
        for row in rows:
            key = (row.workload, row.client)
            if int(row.workload.split()[1]) == size and "half" not in row.workload and key not in groups:
                groups.append(key)
        for i, name in enumerate(BROKER_NAMES):
            heights = [values.get((w, c, name), 0) for w, c in groups]
            panel.bar([g + (i - 1) * width for g in range(len(groups))], heights, width, label=name)
        labels = [
            f"{w.split(' B')[0].split()[0]}{w.split(' B')[1].replace(' max', '')}\n{c.split(' (')[0]}"
            for w, c in groups
        ]
        panel.set_xticks(range(len(groups)), labels, rotation=45, ha="right", fontsize=8)
        panel.set_title(f"records of {size} B")
        panel.set_ylabel("MiB/s")
        panel.grid(axis="y", alpha=0.3)
    panels[0][0].legend()
    figure.suptitle("tidelog vs Kafka 4.4, maximum rate (broker on one core, client on the other)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def rows_from_markdown(path: Path) -> list[Row]:
    """The table of a compare.md, back into rows (MiB/s only): redraw the chart without rerunning."""
    rows = []
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 12 and cells[2] in BROKER_NAMES and cells[4]:
            workload = cells[0].split(" (")[0]
            rows.append(Row(workload, cells[1], cells[2], {"mib_per_s": float(cells[4].replace(",", ""))}))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the records")
    parser.add_argument("--out-dir", type=Path, default=HERE / "results")
    parser.add_argument("--chart-only", action="store_true", help="redraw compare.png from compare.md, run nothing")
    args = parser.parse_args()
    if args.chart_only:
        chart(rows_from_markdown(args.out_dir / "compare.md"), args.out_dir / "compare.png")
        return
    brokers: list[Running] = []
    # A SIGTERM (kill, timeout) stops the brokers on the way out, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        log("starting Kafka")
        brokers.append(start_kafka())
        log("starting tidelog (durable)")
        brokers.append(start_tidelog(True))
        log("starting tidelog (page-cache acks)")
        brokers.append(start_tidelog(False))
        for b in brokers:
            log(f"{b.name}: pid {b.pid}, {b.bootstrap}, ready in {b.ready_s:.2f} s, RSS {b.idle_rss_mib:.0f} MiB")
        rows = run(brokers, args.quick)
    finally:
        for b in brokers:
            try:
                b.stop()
            except Exception as error:
                log(f"stopping {b.name}: {error}")
    text = report(rows, brokers, args.quick, time.monotonic() - STARTED)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "compare.md").write_text(text)
    try:
        chart(rows, args.out_dir / "compare.png")
    except ImportError:
        log("matplotlib missing: no chart (pip install matplotlib)")
    print(text)


if __name__ == "__main__":
    main()
