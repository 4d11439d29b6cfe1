"""Transactions: tidelog (durable acks, fsync before every answer) against Apache Kafka 4.4 on this
machine, the same workloads in one run, brokers taking turns.

    python bench/transactions.py [--quick] [--repeats 3] [--out bench/results/transactions.md]

Brokers pinned to CPU 0, clients to CPU 1 (as bench/compare.py). Workloads:
- (a) Kafka's ProducerPerformance with --transactional-id and --transaction-duration-ms 10 and
  100, 1 KiB records, acks=all: records/s;
- (b) commit latency: a confluent-kafka producer running 100 transactions/s, each writing one
  record to each of 4 partitions; the time of commit_transaction() after flush() (EndTxn sent to
  answered, markers included on Kafka's side only as far as EndTxn waits for them): p50/p99;
- (c) a confluent-kafka read-process-write copier, 1,000 records per transaction, input offsets
  sent to the transaction: copied records/s;
- (d) a confluent-kafka consumer reading a whole topic where 10% of the transactions aborted, at
  read_committed (which hands out 90% of the records) and at read_uncommitted: log records read
  per second of each, and their ratio;
- (e) tidelog only: the coordinator's load time after a restart with 10,000 transactional ids,
  and the broker's memory per idle id.

Each cell is the median of the repeats (min-max shown); ratios are tidelog / Kafka taken repeat by
repeat. Progress goes to stderr; writes a table to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import compare  # noqa: E402
import e2e  # noqa: E402

RECORD_BYTES = 1024
PARTITIONS = 4
LATENCY_RATE = 100  # transactions per second in (b)
COPY_BATCH = 1000  # records per transaction in (c)
ABORTED_SHARE = 0.1  # of the transactions in (d)
IDS = 10_000  # transactional ids in (e)


def log(message: str) -> None:
    compare.log(message)


def create(broker: compare.Running, topic: str, partitions: int = 1) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 4})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)], request_timeout=30).values():
        future.result(30)
    broker.topics.append(topic)


def client(script: str, *args: str) -> dict[str, Any]:
    """Runs one of this file's client functions in a child pinned to CPU 1; its JSON answer."""
    command = [*e2e.pinned(1), sys.executable, str(Path(__file__)), "--client", script, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ---- (a) ProducerPerformance --------------------------------------------------------------------


def producer_performance(broker: compare.Running, topic: str, records: int, duration_ms: int) -> dict[str, Any]:
    transaction = (f"perf-{topic}", duration_ms)
    return compare.producer_performance(broker, topic, records, RECORD_BYTES, "all", 0, 5, transaction=transaction)


# ---- client functions (run in a child process) -------------------------------------------------


def run_commit_latency(bootstrap: str, topic: str, transactions: str) -> dict[str, Any]:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"latency-{topic}", "linger.ms": 0})
    producer.init_transactions(30)
    value = b"x" * RECORD_BYTES
    latencies = []
    interval = 1 / LATENCY_RATE
    next_start = time.perf_counter()
    for _ in range(int(transactions)):
        time.sleep(max(0.0, next_start - time.perf_counter()))
        next_start += interval
        producer.begin_transaction()
        for partition in range(PARTITIONS):
            producer.produce(topic, value=value, partition=partition)
        producer.flush(30)
        started = time.perf_counter()
        producer.commit_transaction(30)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    return {
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
        "transactions": len(latencies),
    }


def run_copier(bootstrap: str, source: str, target: str, records: str) -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"copier-{source}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([source])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"copier-{source}", "linger.ms": 5})
    producer.init_transactions(30)
    wanted, copied = int(records), 0
    started = None
    while copied < wanted:
        messages = [m for m in consumer.consume(COPY_BATCH, 5.0) if not m.error()]
        if not messages:
            continue
        started = started or time.perf_counter()
        producer.begin_transaction()
        for message in messages:
            producer.produce(target, value=message.value(), partition=message.partition())
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(30)
        copied += len(messages)
    seconds = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return {"records_per_s": copied / seconds if seconds else 0.0, "records": copied}


def produce_all(producer: Any, topic: str, value: bytes, count: int) -> None:
    """`count` records to partition 0, waiting for room when the client's queue is full."""
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, value=value, partition=0)
                break
            except BufferError:
                producer.poll(0.01)


def run_seed(bootstrap: str, topic: str, records: str, transactional: str) -> dict[str, Any]:
    """Writes `records` records to partition 0: plainly, or in transactions of 1,000 of which
    every tenth aborts."""
    from confluent_kafka import Producer

    value = b"y" * RECORD_BYTES
    if transactional == "no":
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        produce_all(producer, topic, value, int(records))
        producer.flush(60)
        return {"records": int(records)}
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"seed-{topic}", "linger.ms": 5})
    producer.init_transactions(30)
    written = 0
    for n in range(int(records) // COPY_BATCH):
        producer.begin_transaction()
        produce_all(producer, topic, value, COPY_BATCH)
        if n % round(1 / ABORTED_SHARE) == round(1 / ABORTED_SHARE) - 1:
            producer.flush(60)
            producer.abort_transaction(60)
        else:
            producer.commit_transaction(60)
            written += COPY_BATCH
    return {"committed": written}


def run_consume(bootstrap: str, topic: str, isolation: str, expected: str) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{isolation}-{time.monotonic_ns()}",
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "fetch.max.bytes": 52428800,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    count, started = 0, time.perf_counter()  # the whole partition is read: aborted records too
    while True:
        messages = consumer.consume(10_000, 5.0)
        if any(m.error() and m.error().code() == -191 for m in messages):  # _PARTITION_EOF
            count += sum(1 for m in messages if not m.error())
            break
        count += sum(1 for m in messages if not m.error())
    seconds = time.perf_counter() - started
    consumer.close()
    if count != int(expected):
        raise RuntimeError(f"{isolation}: {count} records, expected {expected}")
    return {"records_per_s": count / seconds, "records": count, "seconds": seconds}


CLIENTS = {
    "latency": run_commit_latency,
    "copier": run_copier,
    "seed": run_seed,
    "consume": run_consume,
}


# ---- (e) coordinator load ---------------------------------------------------------------------


def coordinator_load(ids: int) -> dict[str, Any]:
    """`ids` transactional ids, each InitProducerId once (Empty), then a clean restart: the load
    time the broker logs, and its RSS above what it was before the ids."""
    import re
    import tempfile

    sys.path.insert(0, str(HERE.parent))
    from tests.server.conftest import BrokerProcess
    from tests.transactions.txn_wire import TxnClient

    broker = BrokerProcess(Path(tempfile.mkdtemp(prefix="tidelog-txn-load-")) / "data", e2e.free_port()).start()
    try:
        assert broker.process is not None
        txn = TxnClient(broker.port)
        txn.init("warm-up")  # creates __transaction_state
        baseline = compare.rss_mib(broker.process.pid)
        for i in range(ids):
            answer = txn.init(f"idle-{i}")
            assert answer.error_code == 0, answer
        txn.close()
        loaded_rss = compare.rss_mib(broker.process.pid)
        broker.stop()
        broker.lines.clear()
        broker.start()
        txn = TxnClient(broker.port)
        started = time.perf_counter()
        txn.init("after-restart")  # answered once the shard holding it is loaded
        first_answer_s = time.perf_counter() - started
        txn.close()
        deadline = time.monotonic() + 120
        loaded_ms = None
        pattern = re.compile(r"transaction coordinator loaded: (\d+) record\(s\) in (\d+) ms")
        while loaded_ms is None and time.monotonic() < deadline:
            found = pattern.search(broker.log_text())
            loaded_ms = int(found.group(2)) if found else None
            time.sleep(0.2)
        return {
            "ids": ids,
            "load_ms": loaded_ms,
            "first_answer_ms": first_answer_s * 1000,
            "kib_per_id": (loaded_rss - baseline) * 1024 / ids,
        }
    finally:
        broker.stop()


# ---- the run ----------------------------------------------------------------------------------


def run(brokers: list[compare.Running], repeats: int, quick: bool) -> dict[str, dict[str, list[float]]]:
    scale = 0.2 if quick else 1.0
    perf_records = int(200_000 * scale)
    latency_transactions = int(1000 * scale)
    copy_records = int(100_000 * scale)
    consume_records = int(200_000 * scale)
    results: dict[str, dict[str, list[float]]] = {}

    def add(case: str, broker: compare.Running, value: float) -> None:
        results.setdefault(case, {}).setdefault(broker.name, []).append(value)

    for repeat in range(repeats):
        for turn, broker in enumerate(compare.rotated(brokers, repeat)):
            tag = f"r{repeat}t{turn}"
            for duration in (10, 100):
                topic = f"perf-{duration}-{tag}"
                create(broker, topic)
                row = producer_performance(broker, topic, perf_records, duration)
                add(f"(a) ProducerPerformance, transactions of {duration} ms: records/s", broker, row["records_per_s"])
                log(f"[{repeat + 1}/{repeats}] {broker.name}: (a) {duration} ms {row['records_per_s']:,.0f} rec/s")
            topic = f"latency-{tag}"
            create(broker, topic, PARTITIONS)
            row = client("latency", broker.bootstrap, topic, str(latency_transactions))
            add("(b) commit latency p50 ms", broker, row["p50_ms"])
            add("(b) commit latency p99 ms", broker, row["p99_ms"])
            log(f"[{repeat + 1}/{repeats}] {broker.name}: (b) p50 {row['p50_ms']:.2f} p99 {row['p99_ms']:.2f} ms")
            source, target = f"copy-in-{tag}", f"copy-out-{tag}"
            create(broker, source)
            create(broker, target)
            client("seed", broker.bootstrap, source, str(copy_records), "no")
            row = client("copier", broker.bootstrap, source, target, str(copy_records))
            add("(c) read-process-write copier: records/s", broker, row["records_per_s"])
            log(f"[{repeat + 1}/{repeats}] {broker.name}: (c) {row['records_per_s']:,.0f} rec/s")
            topic = f"aborts-{tag}"
            create(broker, topic)
            seeded = client("seed", broker.bootstrap, topic, str(consume_records), "yes")
            committed = client("consume", broker.bootstrap, topic, "read_committed", str(seeded["committed"]))
            uncommitted = client("consume", broker.bootstrap, topic, "read_uncommitted", str(consume_records))
            # Both read the whole partition (200k records, 10% of them aborted); read_committed
            # hands out 90% of them. The ratio is of the reading speeds: log records per second.
            committed_speed = consume_records / committed["seconds"]
            uncommitted_speed = consume_records / uncommitted["seconds"]
            add("(d) read_committed: log records/s", broker, committed_speed)
            add("(d) read_uncommitted: log records/s", broker, uncommitted_speed)
            ratio = committed_speed / uncommitted_speed
            add("(d) read_committed / read_uncommitted", broker, ratio)
            log(f"[{repeat + 1}/{repeats}] {broker.name}: (d) committed/uncommitted {ratio:.2f}")
            compare.delete_topics(broker)
    return results


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.2f} ({min(values):,.2f}-{max(values):,.2f})"


def report(results: dict[str, dict[str, list[float]]], load: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# Transactions: tidelog against Apache Kafka 4.4",
        "",
        f"Command: `python bench/transactions.py{' --quick' if args.quick else ''} --repeats {args.repeats}`"
        f" (whole run {(time.monotonic() - compare.STARTED) / 60:.1f} min). Brokers on CPU 0, clients on CPU 1;"
        " tidelog with durable acks (fsync before every answer, markers and coordinator records"
        " included), Kafka with its defaults (page cache). Cells: median (min-max) of the repeats.",
        "",
        f"| workload | {compare.KAFKA} | {compare.DURABLE} | tidelog / Kafka |",
        "|---|---:|---:|---:|",
    ]
    for case, by_broker in results.items():
        kafka, tidelog = by_broker.get(compare.KAFKA, []), by_broker.get(compare.DURABLE, [])
        ratios = [t / k for t, k in zip(tidelog, kafka, strict=False) if k]
        lines.append(
            f"| {case} | {spread(kafka) if kafka else '-'} | {spread(tidelog) if tidelog else '-'} | "
            f"{spread(ratios) if ratios else '-'} |"
        )
    lines += [
        "",
        f"Coordinator (tidelog only): {load['ids']:,} transactional ids (each InitProducerId once), then"
        f" a restart: `__transaction_state` loaded in {load['load_ms']} ms; the first InitProducerId after"
        f" the restart answered in {load['first_answer_ms']:.0f} ms; {load['kib_per_id']:.2f} KiB of broker"
        " memory per idle id (RSS after the ids minus RSS before them).",
        "",
        "Targets (issue 11): (a) >= 1.0x Kafka; (b) p99 <= Kafka's; (c) >= 1.0x Kafka; (d) >= 0.95.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--client":
        print(json.dumps(CLIENTS[sys.argv[2]](*sys.argv[3:])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a fifth of the records")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "transactions.md")
    args = parser.parse_args()
    brokers: list[compare.Running] = []
    try:
        log("starting Kafka")
        brokers.append(compare.start_kafka())
        log("starting tidelog (durable)")
        brokers.append(compare.start_tidelog(True))
        results = run(brokers, args.repeats, args.quick)
    finally:
        for b in brokers:
            try:
                b.stop()
            except Exception as error:
                log(f"stopping {b.name}: {error}")
    log("coordinator load")
    load = coordinator_load(IDS // 5 if args.quick else IDS)
    text = report(results, load, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
