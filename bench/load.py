"""End-to-end load tool: produce or consume against a running broker with confluent-kafka.

    python bench/load.py produce --bootstrap 127.0.0.1:9092 --topic load --records 500000 --acks all
    python bench/load.py produce ... --rate 50000          # fixed rate: latency under load
    python bench/load.py produce ... --acks all --idempotence   # idempotent producer (InitProducerId)
    python bench/load.py consume --bootstrap 127.0.0.1:9092 --topic load --records 500000

Prints progress to stderr while it runs and one JSON line of results to stdout: records/s,
MiB/s, and for produce the ack latency percentiles (produce() call to delivery report, as
librdkafka measures it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

MiB = 1 << 20
PROGRESS_INTERVAL_S = 0.5
POLL_EVERY_RECORDS = 1000
CONSUME_BATCH = 10_000


@dataclass
class Result:
    mode: str
    records: int
    seconds: float
    records_per_s: float
    mib_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    errors: int = 0
    max_ms: float | None = None


class Progress:
    def __init__(self, mode: str, total: int, record_bytes: int) -> None:
        self.mode, self.total, self.record_bytes = mode, total, record_bytes
        self.started = time.perf_counter()
        self.next_report = self.started

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now < self.next_report:
            return
        self.next_report = now + PROGRESS_INTERVAL_S
        elapsed = max(now - self.started, 1e-9)
        filled = int(30 * done / max(self.total, 1))
        rate = done * self.record_bytes / elapsed / MiB
        sys.stderr.write(
            f"\r{self.mode} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} records, {rate:.0f} MiB/s "
        )
        sys.stderr.flush()

    def finish(self) -> None:
        sys.stderr.write("\n")


def produce(args: argparse.Namespace) -> Result:
    latencies = np.empty(args.records, dtype=np.float64)
    delivered = 0
    errors = 0

    def on_delivery(error: object, message: object) -> None:
        nonlocal delivered, errors
        if error is not None:
            errors += 1
        latencies[delivered] = message.latency()  # type: ignore[attr-defined]
        delivered += 1

    in_flight = {"max.in.flight.requests.per.connection": args.max_in_flight} if args.max_in_flight else {}
    producer = Producer(
        {
            **in_flight,
            "bootstrap.servers": args.bootstrap,
            "acks": args.acks,
            "linger.ms": args.linger_ms,
            "batch.size": args.batch_size,
            "compression.type": args.compression,
            "queue.buffering.max.kbytes": 1 << 20,
            "queue.buffering.max.messages": 1_000_000,
            "socket.nagle.disable": True,
            "enable.idempotence": args.idempotence,
        }
    )
    payload = np.random.default_rng(1).bytes(args.record_size)
    # Warm-up outside the measurement: connections, metadata and the first batches.
    for partition in range(args.partitions):
        producer.produce(args.topic, payload, partition=partition)
    producer.flush()
    progress = Progress("produce", args.records, args.record_size)
    interval = 1.0 / args.rate if args.rate else 0.0
    started = time.perf_counter()
    for sent in range(args.records):
        if interval:
            # Serve delivery reports (librdkafka's latency() counts until a report is served),
            # then sleep rather than spin, so librdkafka's own threads get the CPU meanwhile.
            producer.poll(0)
            wait = started + sent * interval - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        while True:
            try:
                producer.produce(args.topic, payload, partition=sent % args.partitions, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.001)
        if interval or sent % POLL_EVERY_RECORDS == 0:
            producer.poll(0)
            progress.update(delivered)
    producer.flush()
    seconds = time.perf_counter() - started
    progress.update(delivered)
    progress.finish()
    percentiles = np.percentile(latencies[:delivered] * 1000, [50, 99, 99.9, 100])
    p50, p99, p999, worst = (round(float(p), 3) for p in percentiles)
    return Result(
        "produce",
        delivered,
        seconds,
        delivered / seconds,
        delivered * args.record_size / seconds / MiB,
        p50,
        p99,
        p999,
        errors,
        worst,
    )


def consume(args: argparse.Namespace) -> Result:
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "load",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * MiB,
            "max.partition.fetch.bytes": 16 * MiB,
            "fetch.wait.max.ms": 100,
            "queued.max.messages.kbytes": 1 << 20,
        }
    )
    consumer.assign([TopicPartition(args.topic, p, 0) for p in range(args.partitions)])
    progress = Progress("consume", args.records, args.record_size)
    received = 0
    payload_bytes = 0
    started = time.perf_counter()
    while received < args.records:
        messages = consumer.consume(CONSUME_BATCH, 1.0)
        for message in messages:
            payload_bytes += len(message)
        received += len(messages)
        progress.update(received)
    seconds = time.perf_counter() - started
    progress.finish()
    consumer.close()
    return Result("consume", received, seconds, received / seconds, payload_bytes / seconds / MiB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("produce", "consume"))
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="load")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--record-size", type=int, default=1024)
    parser.add_argument("--acks", default="1", choices=("0", "1", "all"))
    parser.add_argument("--rate", type=float, default=0, help="records/s; 0 = as fast as possible")
    parser.add_argument("--linger-ms", type=float, default=5)
    parser.add_argument("--batch-size", type=int, default=256 * 1024)
    parser.add_argument("--compression", default="none")
    parser.add_argument("--idempotence", action="store_true", help="enable.idempotence=true (needs --acks all)")
    parser.add_argument(
        "--max-in-flight", type=int, default=0, help="max.in.flight.requests.per.connection; 0 = librdkafka's default"
    )
    args = parser.parse_args()
    result = produce(args) if args.mode == "produce" else consume(args)
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
