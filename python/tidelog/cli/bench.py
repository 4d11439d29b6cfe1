"""`tidelog bench produce|consume|compare`: quick load numbers against any Kafka-compatible
cluster, with a progress bar, a table and (--chart) a PNG of throughput over time.

produce: `--records` records of `--record-size` bytes at full speed (or `--rate` a second),
confluent-kafka with the given acks and compression; records/s, MiB/s and the delivery latency
(produce() to delivery report) percentiles. consume: reads a topic from its start with an
assigned consumer until `--records` are read or the end; records/s and MiB/s. compare: runs
`bench/compare.py` of a tidelog checkout (tidelog against Apache Kafka on this machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as KafkaPartition
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tidelog.cli.admin import REQUEST_TIMEOUT_S, Context, cluster_verb, fail

MIB = 1 << 20
# Throughput is sampled this often for the chart.
SAMPLE_S = 0.5
# consume stops when no record came for this long after the end was reached.
CONSUME_IDLE_S = 5.0
PERCENTILES = (50, 99, 99.9)


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    )


def chart(path: Path, title: str, samples: list[tuple[float, int]], record_size: int) -> None:
    """Records/s over time; needs matplotlib (`pip install tidelog[verify]`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("--chart needs matplotlib: pip install matplotlib")
    times = [t for t, _ in samples[1:]]
    rates = [
        (count - previous) * record_size / MIB / (t - t0)
        for (t0, previous), (t, count) in zip(samples, samples[1:], strict=False)
        if t > t0
    ]
    figure, axis = plt.subplots(figsize=(8, 4))
    axis.plot(times, rates)
    axis.set_xlabel("seconds")
    axis.set_ylabel("MiB/s")
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


bench = cluster_verb("bench", "Quick load numbers against any Kafka-compatible cluster.")

pass_context = click.make_pass_decorator(Context)


@bench.command("produce")
@click.argument("topic")
@click.option("--records", "-n", type=int, default=1_000_000, show_default=True)
@click.option("--record-size", "-s", type=int, default=1024, show_default=True, help="bytes of each value")
@click.option("--acks", type=click.Choice(["0", "1", "all"]), default="all", show_default=True)
@click.option("--compression", type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]), default="none")
@click.option("--rate", type=float, default=None, help="records a second (default: as fast as it goes)")
@click.option("--linger-ms", type=int, default=5, show_default=True)
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path), help="write a PNG here")
@pass_context
def bench_produce(
    context: Context,
    topic: str,
    records: int,
    record_size: int,
    acks: str,
    compression: str,
    rate: float | None,
    linger_ms: int,
    chart_path: Path | None,
) -> None:
    """Produce at full speed or a fixed rate and report throughput and latency."""
    producer = Producer(
        {
            "bootstrap.servers": context.bootstrap,
            "acks": acks,
            "compression.type": compression,
            "linger.ms": linger_ms,
            "batch.size": 256 * 1024,
            "queue.buffering.max.kbytes": 256 * 1024,
        }
    )
    value = os.urandom(record_size // 2).hex().encode()[:record_size].ljust(record_size, b"0")
    latencies: list[float] = []
    errors: list[KafkaError] = []

    samples: list[tuple[float, int]] = [(0.0, 0)]
    started = time.perf_counter()
    next_sample = started + SAMPLE_S
    with progress() as bar:
        task = bar.add_task(f"produce {topic}", total=records)
        for i in range(records):
            sent = time.perf_counter()
            if rate is not None:
                due = started + i / rate
                if due > sent:
                    time.sleep(due - sent)
                    sent = time.perf_counter()

            def on_delivery(error: KafkaError | None, _: Message, sent: float = sent) -> None:
                if error is None:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors.append(error)

            while True:
                try:
                    producer.produce(topic, value=value, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
            if sent >= next_sample:
                samples.append((sent - started, len(latencies)))
                bar.update(task, completed=i + 1)
                next_sample += SAMPLE_S
        left = producer.flush(REQUEST_TIMEOUT_S * 4)
        bar.update(task, completed=records)
    elapsed = time.perf_counter() - started
    samples.append((elapsed, len(latencies)))
    if errors:
        fail(errors[0])
    if left:
        fail(f"{left} record(s) not acknowledged")
    ordered = sorted(latencies)
    row: dict[str, Any] = {
        "records": len(latencies),
        "seconds": round(elapsed, 3),
        "records/s": round(len(latencies) / elapsed),
        "MiB/s": round(len(latencies) * record_size / MIB / elapsed, 1),
    }
    row |= {f"p{p} ms": round(percentile(ordered, p) * 1000, 2) for p in PERCENTILES}
    if chart_path is not None:
        chart(chart_path, f"produce {topic}: {record_size} B, acks={acks}", samples, record_size)
    context.show([row])


@bench.command("consume")
@click.argument("topic")
@click.option("--records", "-n", type=int, default=None, help="stop after this many (default: the whole topic)")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path), help="write a PNG here")
@pass_context
def bench_consume(context: Context, topic: str, records: int | None, chart_path: Path | None) -> None:
    """Read a topic from its start (assigned partitions, no group) and report throughput."""
    consumer = Consumer(
        {
            "bootstrap.servers": context.bootstrap,
            "group.id": f"tidelog-bench-{time.time_ns()}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * MIB,
        }
    )
    try:
        found = consumer.list_topics(topic, timeout=REQUEST_TIMEOUT_S).topics.get(topic)
        if found is None or found.error is not None:
            fail(found.error if found is not None else f"unknown topic {topic}")
        partitions = sorted(found.partitions)
        total = sum(
            consumer.get_watermark_offsets(KafkaPartition(topic, p), timeout=REQUEST_TIMEOUT_S)[1] for p in partitions
        )
        wanted = total if records is None else min(records, total)
        consumer.assign([KafkaPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        read = size = 0
        samples: list[tuple[float, int]] = [(0.0, 0)]
        started = time.perf_counter()
        last = started
        with progress() as bar:
            task = bar.add_task(f"consume {topic}", total=wanted)
            while read < wanted and time.perf_counter() - last < CONSUME_IDLE_S:
                batch = consumer.consume(10_000, 0.5)
                for message in batch:
                    if message.error() is not None:
                        fail(message.error())
                    size += len(message.value() or b"")
                read += len(batch)
                if batch:
                    last = time.perf_counter()
                    samples.append((last - started, read))
                    bar.update(task, completed=read)
        elapsed = time.perf_counter() - started
    except KafkaException as error:
        fail(error)
    finally:
        consumer.close()
    row = {
        "records": read,
        "seconds": round(elapsed, 3),
        "records/s": round(read / elapsed) if elapsed else 0,
        "MiB/s": round(size / MIB / elapsed, 1) if elapsed else 0,
    }
    if chart_path is not None:
        chart(chart_path, f"consume {topic}", samples, size // max(read, 1))
    context.show([row])


@bench.command(
    "compare", add_help_option=False, context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.pass_context
def bench_compare(click_context: click.Context) -> None:
    """tidelog against Apache Kafka on this machine: runs bench/compare.py of a tidelog checkout
    with these arguments (see its --help: --quick, --out-dir)."""
    script = Path(__file__).resolve().parents[3] / "bench" / "compare.py"
    if not script.is_file():
        fail("bench compare needs a tidelog checkout (bench/compare.py), not an installed package")
    result = subprocess.run([sys.executable, str(script), *click_context.args], check=False)
    if result.returncode:
        sys.exit(result.returncode)
