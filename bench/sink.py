#!/usr/bin/env python3
"""What exactly-once into a database costs: `tidelog.sink` against the loops people write.

One tidelog broker (durable acks) holds --records records of --size bytes over 4 partitions.
Each case reads all of them from the start into a new database (a SQLite file with WAL and
synchronous=FULL, or a new database on a PostgreSQL server started for the run) in batches of
--batch, and inserts one row per record:

- exactly-once: `ExactlyOnceSink` (offsets in the database, claimed under an owner token,
  compare-and-set in each batch's transaction);
- at-least-once: the same consumer; each batch in one database transaction, then a synchronous
  Kafka commit of its offsets (commit after write: a crash between the two writes the batch twice);
- per-record transaction: the naive "safe" way, one database transaction per record holding the
  row and the record's offset (on the first --naive-records records only: it is slow).

Reports records/s and each case's ratio to at-least-once on the same backend, measured in the
same run (target for exactly-once: >= 0.9). Progress on stderr; a table to --out and a chart
beside it.

    .venv/bin/python bench/sink.py [--records 1000000] [--out bench/results/sink.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "postgres"))

import compare  # noqa: E402
import server as postgres_server  # noqa: E402

PARTITIONS = 4
TOPIC = "sink-input"
# The same consumer settings for every case (librdkafka's defaults otherwise), so only the loops differ.
CONSUMER = {"enable.auto.commit": False, "auto.offset.reset": "earliest"}


def log(message: str) -> None:
    compare.log(message)


def fill(broker: compare.Running, records: int, size: int) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(30)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "batch.size": 1 << 20})
    padding = b"x" * size
    for i in range(records):
        value = (b"%d:" % i + padding)[:size]
        while True:
            try:
                producer.produce(TOPIC, value, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 100_000 == 0:
            log(f"  produced {i:,}")
    assert producer.flush(60) == 0
    log(f"  produced {records:,} records of {size} B")


class Database:
    """A new database per case: the connection for the loops, and what the sink's store takes."""

    def __init__(self, backend: str, postgres: Any, scratch: Path, case: str) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.target = str(scratch / f"{case}.db")
            self.placeholder = "?"
        else:
            self.target = postgres.new_database()
            self.placeholder = "%s"
        connection = self.connect()
        connection.execute(
            "CREATE TABLE output (value BYTEA NOT NULL, topic TEXT, p INTEGER, o BIGINT)".replace(
                "BYTEA", "BLOB" if backend == "sqlite" else "BYTEA"
            )
        )
        connection.execute("CREATE TABLE naive_offsets (p INTEGER PRIMARY KEY, next_offset BIGINT)")
        connection.commit()
        connection.close()

    def connect(self) -> Any:
        if self.backend == "sqlite":
            import sqlite3

            connection = sqlite3.connect(self.target, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("BEGIN")
            return _SQLiteConnection(connection)
        import psycopg

        return psycopg.connect(self.target)

    def store(self, group: str) -> Any:
        if self.backend == "sqlite":
            from tidelog.sink import SQLiteOffsetStore

            return SQLiteOffsetStore(self.target, group)
        from tidelog.sink import PostgresOffsetStore

        return PostgresOffsetStore(self.target, group)

    def rows(self) -> int:
        connection = self.connect()
        count = int(connection.execute("SELECT count(*) FROM output").fetchone()[0])
        connection.close()
        return count


class _SQLiteConnection:
    """sqlite3 in explicit-transaction mode with psycopg's shape (execute, commit opens the next)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.connection.execute(sql, params)

    def cursor(self) -> Any:
        return self.connection.cursor()

    def commit(self) -> None:
        self.connection.execute("COMMIT")
        self.connection.execute("BEGIN")

    def close(self) -> None:
        if self.connection.in_transaction:
            self.connection.execute("COMMIT")
        self.connection.close()


def insert_sql(placeholder: str) -> str:
    return (
        f"INSERT INTO output (value, topic, p, o) VALUES ({placeholder}, {placeholder}, {placeholder}, {placeholder})"
    )


def exactly_once(broker: compare.Running, db: Database, records: int, batch: int, group: str) -> float:
    from tidelog.sink import ExactlyOnceSink, KafkaSource

    insert = insert_sql(db.placeholder)

    def handler(batch_records: Any, cursor: Any) -> None:
        cursor.executemany(insert, [(r.value, r.topic, r.partition, r.offset) for r in batch_records])

    source = KafkaSource(
        {"bootstrap.servers": broker.bootstrap, "group.id": group, **CONSUMER},
        partitions=[(TOPIC, p) for p in range(PARTITIONS)],
    )
    started = time.perf_counter()
    with ExactlyOnceSink(source, db.store(group), handler, batch_size=batch) as sink:
        sink.run(max_records=records)
    return time.perf_counter() - started


def consumer(broker: compare.Running, group: str) -> Any:
    from confluent_kafka import Consumer, TopicPartition

    kafka = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, **CONSUMER})
    kafka.assign([TopicPartition(TOPIC, p, -2) for p in range(PARTITIONS)])
    return kafka


def at_least_once(broker: compare.Running, db: Database, records: int, batch: int, group: str) -> float:
    insert = insert_sql(db.placeholder)
    started = time.perf_counter()
    kafka = consumer(broker, group)
    connection = db.connect()
    done = 0
    while done < records:
        messages = [m for m in kafka.consume(batch, 0.5) if m.error() is None]
        if not messages:
            continue
        cursor = connection.cursor()
        cursor.executemany(insert, [(m.value(), m.topic(), m.partition(), m.offset()) for m in messages])
        connection.commit()
        kafka.commit(asynchronous=False, offsets=_next_offsets(messages))
        done += len(messages)
    connection.close()
    kafka.close()
    return time.perf_counter() - started


def _next_offsets(messages: list[Any]) -> list[Any]:
    from confluent_kafka import TopicPartition

    last: dict[tuple[str, int], int] = {}
    for m in messages:
        last[(m.topic(), m.partition())] = m.offset()
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


def per_record(broker: compare.Running, db: Database, records: int, batch: int, group: str) -> float:
    insert = insert_sql(db.placeholder)
    place = db.placeholder
    upsert = (
        f"INSERT INTO naive_offsets (p, next_offset) VALUES ({place}, {place})"
        " ON CONFLICT (p) DO UPDATE SET next_offset = excluded.next_offset"
    )
    started = time.perf_counter()
    kafka = consumer(broker, group)
    connection = db.connect()
    done = 0
    while done < records:
        for m in kafka.consume(min(batch, records - done), 0.5):
            if m.error() is not None:
                continue
            connection.execute(insert, (m.value(), m.topic(), m.partition(), m.offset()))
            connection.execute(upsert, (m.partition(), m.offset() + 1))
            connection.commit()
            done += 1
    connection.close()
    kafka.close()
    return time.perf_counter() - started


CASES: list[tuple[str, Callable[..., float]]] = [
    ("at-least-once", at_least_once),
    ("exactly-once", exactly_once),
    ("per-record transaction", per_record),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--naive-records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the batched cases (median kept)")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sink.md")
    args = parser.parse_args()

    began = time.monotonic()
    log("starting tidelog (durable acks)")
    broker = compare.start_tidelog(durable=True)
    postgres = None
    scratch = Path(tempfile.mkdtemp(prefix="tidelog-sink-bench-"))
    results: dict[tuple[str, str], list[tuple[int, float]]] = {}
    try:
        fill(broker, args.records, args.size)
        backends = args.backends.split(",")
        if "postgres" in backends:
            log("starting PostgreSQL")
            postgres = postgres_server.start()
        for backend in backends:
            for round_ in range(args.repeats):
                for name, case in CASES:
                    if name == "per-record transaction" and round_ > 0:
                        continue
                    count = args.naive_records if name == "per-record transaction" else args.records
                    label = f"{backend}-{name.replace(' ', '-')}-{round_}"
                    db = Database(backend, postgres, scratch, label)
                    log(f"{backend} · {name} · round {round_ + 1}: {count:,} records")
                    seconds = case(broker, db, count, args.batch, label)
                    stored = db.rows()
                    assert stored == count, f"{label}: {stored:,} rows for {count:,} records"
                    results.setdefault((backend, name), []).append((count, seconds))
                    log(f"  {count / seconds:,.0f} records/s ({seconds:.1f} s)")
    finally:
        broker.stop()
        if postgres is not None:
            postgres.stop()
    report(results, args, time.monotonic() - began)


def rate(runs: list[tuple[int, float]]) -> float:
    rates = sorted(count / seconds for count, seconds in runs)
    return rates[len(rates) // 2] if len(rates) % 2 else (rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2


def report(results: dict[tuple[str, str], list[tuple[int, float]]], args: argparse.Namespace, elapsed: float) -> None:
    lines = [
        "# Exactly-once sink vs the usual loops",
        "",
        f"`bench/sink.py --records {args.records} --size {args.size} --batch {args.batch} "
        f"--naive-records {args.naive_records} --repeats {args.repeats}`: {elapsed / 60:.1f} min in all.",
        "One tidelog broker (durable acks), 4 partitions; SQLite with WAL and synchronous=FULL; PostgreSQL "
        "from the distribution's packages with its defaults (fsync on). Rates are medians of the rounds.",
        "",
        "| backend | loop | records | records/s | vs at-least-once |",
        "|---|---|---:|---:|---:|",
    ]
    for backend in args.backends.split(","):
        base = rate(results[(backend, "at-least-once")])
        for name, _ in CASES:
            runs = results[(backend, name)]
            value = rate(runs)
            lines.append(f"| {backend} | {name} | {runs[0][0]:,} | {value:,.0f} | {value / base:.2f}× |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    chart(results, args, args.out.with_suffix(".png"))


def chart(results: dict[tuple[str, str], list[tuple[int, float]]], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = args.backends.split(",")
    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(CASES)
    for i, (name, _) in enumerate(CASES):
        values = [rate(results[(backend, name)]) for backend in backends]
        axis.bar([b + i * width for b in range(len(backends))], values, width, label=name)
    axis.set_xticks([b + width for b in range(len(backends))], backends)
    axis.set_ylabel("records/s")
    axis.set_yscale("log")
    axis.set_title(f"{args.records:,} records of {args.size} B, batches of {args.batch}")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    log(f"chart: {path}")


if __name__ == "__main__":
    main()
