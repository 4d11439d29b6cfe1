"""The embedded API (tidelog.open / tidelog.aio.open) against the OS, SQLite, litequeue and
persist-queue, in one run.

    python bench/embedded.py [--quick] [--sizes 100,1024] [--repeats 3] [--out bench/results/embedded.md]

Records have values of each size in `--sizes` and 16-byte keys. Every case runs in a fresh
directory under tempfile.gettempdir() (deleted afterwards), `--repeats` times, with the order of
the systems rotated from one repeat to the next; the table gives the median and the min-max of
the repeats (the disk of a shared VM varies up to 2x from one run to the next).

(a) batched durable appends, 100 records per call, each call durable before it returns:
    os.write of the same bytes (the tidelog batch of those 100 records) + os.fdatasync per call
    (the baseline), Log.append_many(durability="fsync"), SQLite (WAL, synchronous=FULL) with one
    transaction of 100 INSERTs per call, litequeue with 100 put() in one of its transactions,
    persist-queue with 100 put() (its API commits every put) and with one put() of the list.
(b) 256 writers in one asyncio loop, each awaiting its own durable one-record append, for a fixed
    time after a warm-up: records/s and the latency of each append (from the writer's previous
    completion to this one, closed loop). tidelog: `await AsyncLog.append(...)`; the SQLite-based
    systems: the 256 tasks take turns doing a one-row commit in the loop (see the notes).
(c) reading N records: tidelog Log.read in chunks of 10000 (Record objects) and Log.read_columns
    (numpy columns), SQLite fetchmany(10000) into tuples, litequeue pop(), persist-queue get().

Progress goes to stderr; the report (markdown) to stdout and to --out, with a PNG chart next to
it (same name, .png; needs matplotlib). litequeue and persist-queue are optional: without them
their rows are left out (pip install litequeue persist-queue). No figure here is a test assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.metadata
import os
import platform
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tidelog
import tidelog.aio
from tidelog.embedded import Durability
from tidelog.protocol.record_batch import IMPLEMENTATION, build_batch


def optional(module: str) -> Any:
    """An optional package for the comparison, or None (its rows are then left out)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


litequeue = optional("litequeue")
persistqueue = optional("persistqueue")
persistqueue_pickle = optional("persistqueue.serializers.pickle")

HERE = Path(__file__).parent
PIP_HINT = ".venv/bin/pip install litequeue persist-queue"  # relative: the report is committed
KEY_BYTES = 16
BATCH = 100  # records per call in (a), and per batch in the logs read in (c)
WRITERS = 256
READ_CHUNK = 10_000
POOL = 1000  # distinct records, cycled
TOPIC = "bench"
MiB = 1 << 20
perf = time.perf_counter


@dataclass(frozen=True)
class Plan:
    batch_calls: int  # (a): calls per case (fewer if `slow_seconds` runs out first)
    slow_seconds: float  # (a) and the queues' reads in (c): time cap per case
    writers_seconds: float  # (b): measured window
    warmup_seconds: float  # (b): before the window
    read_records: int  # (c)
    small_backlog: int  # (c): litequeue on a short queue
    repeats: int


FULL = Plan(1000, 3.0, 3.0, 0.5, 1_000_000, 10_000, 3)
QUICK = Plan(40, 0.3, 0.4, 0.1, 20_000, 2_000, 1)


@dataclass(frozen=True)
class Row:
    workload: str  # append | writers | read | columns
    key: str
    label: str
    short: str  # for the chart
    durability: str
    needs: str = ""  # optional package


WORKLOADS = {
    "append": "(a) 100 records per call, durable",
    "writers": f"(b) {WRITERS} asyncio writers, 1 durable record per append",
    "read": "(c) read into Python objects",
    "columns": "(c) columnar read",
}
FITTED = "max_bytes ~ 10000 records"
ROWS = [
    Row(
        "append",
        "raw",
        "os.write + os.fdatasync of the same bytes (baseline)",
        "os.write+fdatasync",
        "fdatasync per call",
    ),
    Row("append", "tidelog", "tidelog `Log.append_many`", "tidelog", '`durability="fsync"`'),
    Row("append", "sqlite", "SQLite: 1 transaction of 100 INSERTs", "SQLite", "WAL, synchronous=FULL"),
    Row(
        "append",
        "lq-full",
        "litequeue: 100 `put()` in 1 `transaction()`",
        "litequeue FULL",
        "WAL, synchronous=FULL (set)",
        "litequeue",
    ),
    Row(
        "append",
        "lq-normal",
        "litequeue: 100 `put()` in 1 `transaction()`",
        "litequeue NORMAL",
        "WAL, synchronous=NORMAL (its default)",
        "litequeue",
    ),
    Row(
        "append",
        "pq-each",
        "persist-queue: 100 `put()`, each its own commit",
        "persist-queue 100 puts",
        "WAL, synchronous=FULL",
        "persistqueue",
    ),
    Row(
        "append",
        "pq-list",
        "persist-queue: 1 `put()` of the 100-record list",
        "persist-queue 1 put(list)",
        "WAL, synchronous=FULL",
        "persistqueue",
    ),
    Row("writers", "tidelog", f"tidelog `await AsyncLog.append` x {WRITERS} tasks", "tidelog", '`durability="fsync"`'),
    Row(
        "writers",
        "sqlite",
        f"SQLite: 1-row autocommit INSERT, {WRITERS} tasks taking turns",
        "SQLite",
        "WAL, synchronous=FULL",
    ),
    Row(
        "writers",
        "lq-full",
        f"litequeue: `put()`, {WRITERS} tasks taking turns",
        "litequeue FULL",
        "WAL, synchronous=FULL (set)",
        "litequeue",
    ),
    Row(
        "writers",
        "lq-normal",
        f"litequeue: `put()`, {WRITERS} tasks taking turns",
        "litequeue NORMAL",
        "WAL, synchronous=NORMAL (its default)",
        "litequeue",
    ),
    Row(
        "writers",
        "pq",
        f"persist-queue: `put()` (auto_commit), {WRITERS} tasks taking turns",
        "persist-queue",
        "WAL, synchronous=FULL",
        "persistqueue",
    ),
    Row(
        "read",
        "tidelog",
        "tidelog `Log.read`, max_records=10000 (default max_bytes, 16 MiB)",
        "tidelog",
        "read_committed",
    ),
    Row(
        "read",
        "tidelog-fitted",
        f"tidelog `Log.read`, max_records=10000, {FITTED}",
        "tidelog (max_bytes fitted)",
        "read_committed",
    ),
    Row("read", "sqlite", "SQLite: `SELECT id, key, value` + `fetchmany(10000)` (tuples)", "SQLite", "-"),
    Row(
        "read",
        "lq-full",
        "litequeue: `pop()` from a backlog of all N records",
        "litequeue pop FULL",
        "FULL (a pop is a write)",
        "litequeue",
    ),
    Row(
        "read",
        "lq-normal",
        "litequeue: `pop()` from a backlog of all N records",
        "litequeue pop NORMAL",
        "NORMAL (its default)",
        "litequeue",
    ),
    Row(
        "read",
        "lq-small",
        "litequeue: `pop()` from a backlog of {small} records",
        "litequeue pop FULL, short queue",
        "FULL",
        "litequeue",
    ),
    Row(
        "read",
        "pq",
        "persist-queue: `get()` (auto_commit=False, `task_done()` every 10000)",
        "persist-queue",
        "FULL",
        "persistqueue",
    ),
    Row(
        "columns",
        "tidelog",
        "tidelog `Log.read_columns`, max_records=10000 (default max_bytes)",
        "tidelog",
        "read_committed",
    ),
    Row(
        "columns",
        "tidelog-fitted",
        f"tidelog `Log.read_columns`, max_records=10000, {FITTED}",
        "tidelog (max_bytes fitted)",
        "read_committed",
    ),
]
ROW = {(r.workload, r.key): r for r in ROWS}


def available(row: Row) -> bool:
    return (
        (row.needs == "litequeue" and litequeue is not None)
        or (row.needs == "persistqueue" and persistqueue is not None)
        or not row.needs
    )


@dataclass
class Sample:
    records: int
    seconds: float
    latencies: list[float] | None = None

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- the records ---------------------------------------------------------------------------------


class Data:
    """POOL distinct (key, value) records of one size, cycled; the same in every system."""

    def __init__(self, size: int) -> None:
        self.size = size
        width = KEY_BYTES + size
        pool = os.urandom(width * POOL)
        self.records = [
            (pool[i * width : i * width + KEY_BYTES], pool[i * width + KEY_BYTES : (i + 1) * width])
            for i in range(POOL)
        ]
        self.joined = [key + value for key, value in self.records]  # the queues store one blob
        self.batches = [self.records[i : i + BATCH] for i in range(0, POOL, BATCH)]
        self.joined_batches = [self.joined[i : i + BATCH] for i in range(0, POOL, BATCH)]
        now = time.time_ns() // 1_000_000
        self.wire_batches = [build_batch([(now, k, v, []) for k, v in batch]) for batch in self.batches]
        self.encoded_record = len(self.wire_batches[0]) / BATCH  # bytes per record on disk

    @property
    def payload(self) -> int:
        return KEY_BYTES + self.size

    def cycle(self, n: int) -> Iterator[tuple[bytes, bytes]]:
        for i in range(n):
            yield self.records[i % POOL]


def timed_calls(call: Callable[[int], object], plan: Plan, records_per_call: int) -> Sample:
    for i in range(2):  # warm-up, untimed
        call(i)
    start, n = perf(), 0
    while n < plan.batch_calls:
        call(n)
        n += 1
        if perf() - start > plan.slow_seconds and n >= 5:
            break
    return Sample(n * records_per_call, perf() - start)


def sqlite_connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    assert mode == "wal", mode
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, key BLOB, value BLOB)")
    return conn


SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
FACTS: dict[str, str] = {}  # durability settings found in this run, for the notes


def synchronous_of(conn: sqlite3.Connection) -> str:
    return SYNC_NAMES.get(conn.execute("PRAGMA synchronous").fetchone()[0], "?")


def open_litequeue(path: Path, synchronous: str) -> Any:
    queue = litequeue.LiteQueue(str(path))
    FACTS["litequeue"] = f"litequeue opens with synchronous={synchronous_of(queue.conn)}"
    queue.conn.execute(f"PRAGMA synchronous={synchronous}")
    assert synchronous_of(queue.conn) == synchronous
    return queue


def open_persistqueue(path: Path, auto_commit: bool) -> Any:
    queue = persistqueue.SQLiteQueue(str(path), auto_commit=auto_commit)
    conn = queue._putter  # one connection unless multithreading=True
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    FACTS["persist-queue"] = f"persist-queue opens with journal_mode={mode}, synchronous={synchronous_of(conn)}"
    conn.execute("PRAGMA synchronous=FULL")
    return queue


# ---- (a) batched appends -------------------------------------------------------------------------


ROUND_CALLS = 20  # (a): the baseline and tidelog take turns in rounds of this many calls


def append_raw_and_tidelog(data: Data, plan: Plan, directory: Path) -> dict[str, Sample]:
    """The baseline and tidelog in alternating rounds of ROUND_CALLS calls, each side's time
    summed apart: the two see the same disk (a shared VM's fsync latency drifts by 2x within
    a minute, so measured one after the other their ratio is mostly that drift)."""
    fd = os.open(directory / "raw.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        with tidelog.open(directory / "tidelog") as log:
            log.create_topic(TOPIC)

            def raw(i: int) -> None:
                os.write(fd, data.wire_batches[i % len(data.wire_batches)])
                os.fdatasync(fd)

            def ours(i: int) -> None:
                log.append_many(TOPIC, data.batches[i % len(data.batches)], partition=0, durability="fsync")

            for i in range(2):  # warm-up, untimed
                raw(i)
                ours(i)
            spent = {"raw": 0.0, "tidelog": 0.0}
            n = 0
            while n < plan.batch_calls:
                for name, call in (("raw", raw), ("tidelog", ours)):
                    start = perf()
                    for i in range(n, n + ROUND_CALLS):
                        call(i)
                    spent[name] += perf() - start
                n += ROUND_CALLS
            return {name: Sample(n * BATCH, seconds) for name, seconds in spent.items()}
    finally:
        os.close(fd)


def append_sqlite(data: Data, plan: Plan, directory: Path) -> dict[str, Sample]:
    conn = sqlite_connect(directory / "sqlite.db")
    try:

        def call(i: int) -> None:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO records (key, value) VALUES (?, ?)", data.batches[i % len(data.batches)])
            conn.execute("COMMIT")

        return {"sqlite": timed_calls(call, plan, BATCH)}
    finally:
        conn.close()


def append_litequeue(synchronous: str) -> Callable[[Data, Plan, Path], dict[str, Sample]]:
    def run(data: Data, plan: Plan, directory: Path) -> dict[str, Sample]:
        queue = open_litequeue(directory / "litequeue.db", synchronous)
        try:

            def call(i: int) -> None:
                with queue.transaction():
                    for item in data.joined_batches[i % len(data.joined_batches)]:
                        queue.put(item)

            return {f"lq-{synchronous.lower()}": timed_calls(call, plan, BATCH)}
        finally:
            queue.close()

    return run


def append_persistqueue(as_list: bool) -> Callable[[Data, Plan, Path], dict[str, Sample]]:
    def run(data: Data, plan: Plan, directory: Path) -> dict[str, Sample]:
        queue = open_persistqueue(directory / "persistqueue", auto_commit=True)
        try:

            def call(i: int) -> None:
                batch = data.joined_batches[i % len(data.joined_batches)]
                if as_list:
                    queue.put(batch)
                else:
                    for item in batch:
                        queue.put(item)

            return {"pq-list" if as_list else "pq-each": timed_calls(call, plan, BATCH)}
        finally:
            queue.close()

    return run


# ---- (b) concurrent writers ----------------------------------------------------------------------


async def closed_loop(append_one: Callable[[int], Any], plan: Plan) -> Sample:
    """WRITERS tasks, each appending as soon as its previous append is answered; counts the
    appends answered inside the window, with the time since the writer's previous answer."""
    begin = perf() + plan.warmup_seconds
    end = begin + plan.writers_seconds
    latencies: list[float] = []

    async def writer(number: int) -> None:
        last, i = perf(), number
        while last < end:
            await append_one(i)
            now = perf()
            if begin <= now < end:
                latencies.append(now - last)
            last, i = now, i + WRITERS

    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    return Sample(len(latencies), plan.writers_seconds, latencies)


def writers_tidelog(data: Data, plan: Plan, directory: Path) -> dict[str, Sample]:
    async def main() -> Sample:
        log = await tidelog.aio.open(directory / "tidelog")
        try:
            await log.create_topic(TOPIC)

            async def append_one(i: int) -> None:
                key, value = data.records[i % POOL]
                await log.append(TOPIC, value, key=key, partition=0, durability="fsync")

            return await closed_loop(append_one, plan)
        finally:
            await log.aclose()

    return {"tidelog": asyncio.run(main())}


def writers_in_turns(put: Callable[[int], object], plan: Plan) -> Sample:
    """SQLite cannot join transactions into one commit, so each task does its one-row commit
    synchronously in the loop and yields: the tasks take turns (the fastest form here; threads
    over one locked connection measured about half as fast)."""

    async def append_one(i: int) -> None:
        put(i)
        await asyncio.sleep(0)

    return asyncio.run(closed_loop(append_one, plan))


def writers_sqlite(data: Data, plan: Plan, directory: Path) -> dict[str, Sample]:
    conn = sqlite_connect(directory / "sqlite.db")
    try:
        insert = "INSERT INTO records (key, value) VALUES (?, ?)"
        return {"sqlite": writers_in_turns(lambda i: conn.execute(insert, data.records[i % POOL]), plan)}
    finally:
        conn.close()


def writers_litequeue(synchronous: str) -> Callable[[Data, Plan, Path], dict[str, Sample]]:
    def run(data: Data, plan: Plan, directory: Path) -> dict[str, Sample]:
        queue = open_litequeue(directory / "litequeue.db", synchronous)
        try:
            return {f"lq-{synchronous.lower()}": writers_in_turns(lambda i: queue.put(data.joined[i % POOL]), plan)}
        finally:
            queue.close()

    return run


def writers_persistqueue(data: Data, plan: Plan, directory: Path) -> dict[str, Sample]:
    queue = open_persistqueue(directory / "persistqueue", auto_commit=True)
    try:
        return {"pq": writers_in_turns(lambda i: queue.put(data.joined[i % POOL]), plan)}
    finally:
        queue.close()


# ---- (c) reads -----------------------------------------------------------------------------------


def populated(what: str, n: int, fill: Callable[[], None]) -> None:
    started = perf()
    fill()
    say(f"      (populated {what} with {n:,} records in {perf() - started:.1f} s, not timed)")


def read_tidelog(data: Data, plan: Plan, directory: Path, repeat: int) -> dict[str, Sample]:
    n = plan.read_records
    with tidelog.open(directory / "tidelog") as log:
        log.create_topic(TOPIC)

        def fill() -> None:  # batches of 100, as (a) writes them; made durable by the last call
            calls = n // BATCH
            for i in range(calls):
                durability: Durability = "fsync" if i == calls - 1 else "os"
                log.append_many(TOPIC, data.batches[i % len(data.batches)], partition=0, durability=durability)
            assert log.offsets(TOPIC, 0).high_watermark == calls * BATCH

        populated("tidelog", n, fill)
        fitted = int(READ_CHUNK * data.encoded_record) + 1

        def records(max_bytes: int | None) -> Sample:
            start, offset, count = perf(), 0, 0
            while count < n:
                if max_bytes is None:  # the API's default
                    found = log.read(TOPIC, 0, offset, max_records=READ_CHUNK)
                else:
                    found = log.read(TOPIC, 0, offset, max_records=READ_CHUNK, max_bytes=max_bytes)
                count += len(found)
                offset = found[-1].offset + 1
            return Sample(count, perf() - start)

        def columns(max_bytes: int | None) -> Sample:
            start, offset, count = perf(), 0, 0
            while count < n:
                if max_bytes is None:
                    found = log.read_columns(TOPIC, 0, offset, max_records=READ_CHUNK)
                else:
                    found = log.read_columns(TOPIC, 0, offset, max_records=READ_CHUNK, max_bytes=max_bytes)
                count += len(found)
                offset = found.next_offset
            return Sample(count, perf() - start)

        cases: list[tuple[str, Callable[[], Sample]]] = [
            ("read:tidelog", lambda: records(None)),
            ("read:tidelog-fitted", lambda: records(fitted)),
            ("columns:tidelog", lambda: columns(None)),
            ("columns:tidelog-fitted", lambda: columns(fitted)),
        ]
        if repeat % 2:
            cases.reverse()
        return {name: case() for name, case in cases}


def read_sqlite(data: Data, plan: Plan, directory: Path, repeat: int) -> dict[str, Sample]:
    n = plan.read_records
    conn = sqlite_connect(directory / "sqlite.db")
    try:

        def fill() -> None:
            for start in range(0, n, READ_CHUNK):
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT INTO records (key, value) VALUES (?, ?)", data.cycle(min(READ_CHUNK, n - start))
                )
                conn.execute("COMMIT")

        populated("SQLite", n, fill)
        start, count = perf(), 0
        cursor = conn.execute("SELECT id, key, value FROM records ORDER BY id")
        while count < n:
            rows = cursor.fetchmany(READ_CHUNK)
            if not rows:
                break
            count += len(rows)
        return {"read:sqlite": Sample(count, perf() - start)}
    finally:
        conn.close()


def fill_litequeue(queue: Any, data: Data, n: int) -> None:
    """The rows `put()` writes (same columns, uuid7 ids), inserted in large transactions."""
    insert = (
        f"INSERT INTO {queue.table} (data, message_id, status, in_time, lock_time, done_time) "
        "VALUES (?, ?, 0, ?, NULL, NULL)"
    )
    for start in range(0, n, READ_CHUNK):
        rows = (
            (data.joined[i % POOL], litequeue.uuid7(), time.time_ns()) for i in range(start, min(n, start + READ_CHUNK))
        )
        with queue.transaction():
            queue.conn.executemany(insert, rows)


def pop_for(queue: Any, limit: int, seconds: float) -> Sample:
    start, count = perf(), 0
    while count < limit and perf() - start < seconds:
        if queue.pop() is None:
            break
        count += 1
    return Sample(count, perf() - start)


def read_litequeue(data: Data, plan: Plan, directory: Path, repeat: int) -> dict[str, Sample]:
    n = plan.read_records
    out: dict[str, Sample] = {}
    queue = open_litequeue(directory / "litequeue.db", "FULL")
    try:
        populated("litequeue", n, lambda: fill_litequeue(queue, data, n))
        out["read:lq-full"] = pop_for(queue, n, plan.slow_seconds)
        queue.conn.execute("PRAGMA synchronous=NORMAL")
        out["read:lq-normal"] = pop_for(queue, n, plan.slow_seconds)
    finally:
        queue.close()
    small = open_litequeue(directory / "litequeue-small.db", "FULL")
    try:
        fill_litequeue(small, data, plan.small_backlog)
        out["read:lq-small"] = pop_for(small, plan.small_backlog, plan.slow_seconds)
    finally:
        small.close()
    return out


def read_persistqueue(data: Data, plan: Plan, directory: Path, repeat: int) -> dict[str, Sample]:
    n = plan.read_records
    path = directory / "persistqueue"
    queue = open_persistqueue(path, auto_commit=False)

    def fill() -> None:  # the rows put() writes (pickled item, time), in large transactions
        insert = f"INSERT INTO {queue._table_name} (data, timestamp) VALUES (?, ?)"
        conn = queue._putter
        for start in range(0, n, READ_CHUNK):
            now = time.time()
            rows = (
                (persistqueue_pickle.dumps(data.joined[i % POOL]), now)
                for i in range(start, min(n, start + READ_CHUNK))
            )
            with conn:
                conn.executemany(insert, rows)

    populated("persist-queue", n, fill)
    queue.close()
    queue = open_persistqueue(path, auto_commit=False)  # counts the rows, as on a restart
    try:
        start, count = perf(), 0
        while count < n and perf() - start < plan.slow_seconds:
            try:
                queue.get(block=False)
            except persistqueue.Empty:
                break
            count += 1
            if count % READ_CHUNK == 0:
                queue.task_done()
        queue.task_done()
        return {"read:pq": Sample(count, perf() - start)}
    finally:
        queue.close()


# ---- the run -------------------------------------------------------------------------------------

Job = Callable[..., dict[str, Sample]]


def jobs() -> list[tuple[str, str, Job]]:
    """(phase, name, job); a phase's jobs run in an order rotated per repeat."""
    found: list[tuple[str, str, Job]] = [
        ("append", "raw", append_raw_and_tidelog),  # both rows, in alternating rounds
        ("append", "sqlite", append_sqlite),
        ("writers", "tidelog", writers_tidelog),
        ("writers", "sqlite", writers_sqlite),
        ("read", "tidelog", read_tidelog),
        ("read", "sqlite", read_sqlite),
    ]
    if litequeue is not None:
        found += [
            ("append", "litequeue FULL", append_litequeue("FULL")),
            ("append", "litequeue NORMAL", append_litequeue("NORMAL")),
            ("writers", "litequeue FULL", writers_litequeue("FULL")),
            ("writers", "litequeue NORMAL", writers_litequeue("NORMAL")),
            ("read", "litequeue", read_litequeue),
        ]
    if persistqueue is not None:
        found += [
            ("append", "persist-queue puts", append_persistqueue(False)),
            ("append", "persist-queue list", append_persistqueue(True)),
            ("writers", "persist-queue", writers_persistqueue),
            ("read", "persist-queue", read_persistqueue),
        ]
    return found


def rotated(items: list[Any], by: int) -> list[Any]:
    by %= len(items)
    return items[by:] + items[:by]


def run(plan: Plan, sizes: list[int]) -> dict[tuple[int, str, str], list[Sample]]:
    results: dict[tuple[int, str, str], list[Sample]] = {}
    all_jobs = jobs()
    for repeat in range(plan.repeats):
        for size in sizes:
            data = Data(size)
            for phase in ("append", "writers", "read"):
                for _, _name, job in rotated([j for j in all_jobs if j[0] == phase], repeat):
                    with tempfile.TemporaryDirectory(prefix="tidelog-embedded-") as directory:
                        args = (data, plan, Path(directory)) + ((repeat,) if phase == "read" else ())
                        samples = job(*args)
                    for key, sample in samples.items():
                        workload, row_key = key.split(":") if ":" in key else (phase, key)
                        results.setdefault((size, workload, row_key), []).append(sample)
                        say(progress(repeat, plan.repeats, size, ROW[workload, row_key], sample))
    return results


def progress(repeat: int, repeats: int, size: int, row: Row, sample: Sample) -> str:
    line = (
        f"[{repeat + 1}/{repeats}] {size:>4} B {row.workload:<7} {row.short:<32} "
        f"{sample.rate:>13,.0f} rec/s {sample.rate * (KEY_BYTES + size) / MiB:>8.1f} MiB/s  "
        f"({sample.records:,} in {sample.seconds:.2f} s)"
    )
    if sample.latencies:
        p50, p99 = percentiles(sample.latencies)
        line += f"  p50 {p50:.2f} ms p99 {p99:.2f} ms"
    return line


def percentiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return at(0.50), at(0.99)


# ---- the report ----------------------------------------------------------------------------------


def git_state() -> str:
    """The commit, and the tracked files that differ from it (the code this run imports)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD").strip() or "?"
    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if line.strip()]
    return f"{commit} with uncommitted changes in {', '.join(dirty)}" if dirty else f"{commit} (clean working tree)"


def machine_facts(git_at_start: str) -> list[str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f"{kib / (1 << 20):.0f} GiB"
    git_at_end = git_state()
    changed = (
        ""
        if git_at_end == git_at_start
        else (
            f" The tree changed during the run (at the end: {git_at_end}), "
            "but the run had imported its code at the start."
        )
    )

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    import numpy

    from tidelog.storage import PartitionLog

    engine = Path(sys.modules[PartitionLog.__module__].__file__ or "")
    build = "DEBUG build" if b"precondition_check" in engine.read_bytes() else "optimised build"
    return [
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs ({cpu}), {memory} RAM, Linux {platform.release()}; "
        f"temp dir {temp_filesystem()}.",
        f"tidelog {git_at_start} when the run started.{changed} Engine {build}, record codec {IMPLEMENTATION}. "
        f"Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, numpy {numpy.__version__}, litequeue {version('litequeue')}, "
        f"persist-queue {version('persist-queue')}.",
    ]


def temp_filesystem() -> str:
    where = os.path.realpath(tempfile.gettempdir())
    best = ("", "?", "?", "")
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind, options = line.split()[:4]
            inside = where == mount or where.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best[0]):
                best = (mount, device, kind, options)
    mount, device, kind, options = best
    return f"{where} ({kind} on {device}, mounted at {mount}, {options})"


def number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"


def ratio_text(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:,.0f}x"


def median_rate(samples: list[Sample]) -> float:
    return statistics.median(s.rate for s in samples)


def paired_ratios(reference: list[Sample], other: list[Sample]) -> list[float]:
    """tidelog / other, repeat by repeat (the two ran minutes apart at most, on the same disk)."""
    return [r.rate / o.rate for r, o in zip(reference, other, strict=False) if o.rate > 0]


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def report(
    results: dict[tuple[int, str, str], list[Sample]],
    plan: Plan,
    sizes: list[int],
    command: str,
    minutes: float,
    loads: tuple[str, str],
    git_at_start: str,
) -> str:
    lines = [
        "# The embedded API against the OS, SQLite, litequeue and persist-queue",
        "",
        f"Command: `{command}` (whole run {minutes:.1f} min, {plan.repeats} repeats; each cell is the median of the "
        "repeats, with their min-max).",
        "",
        *machine_facts(git_at_start),
        "",
        f"Load average (1, 5, 15 min) at the start: {loads[0]}; at the end: {loads[1]}. "
        "On a shared machine, trust the ratios (both sides measured in the same run, on the same disk) more than "
        "the absolute figures.",
        "",
        "Records: values of the size given, 16-byte keys (random bytes). MiB/s counts key + value bytes. "
        "`tidelog / this` is tidelog's records/s over this row's for the same workload and size, taken repeat by "
        "repeat (the two measured minutes apart at most) and given as the median (min-max) of those ratios; for the "
        "baseline row it is the share of the raw OS speed that tidelog reaches (those two measured in alternating "
        "rounds within one case).",
        "",
        "| size | workload | system | durability | records/s | min-max | MiB/s | p50 ms | p99 ms | tidelog / this |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        for workload in WORKLOADS:
            reference = results.get((size, workload, "tidelog"))
            for row in ROWS:
                samples = results.get((size, workload, row.key))
                if row.workload != workload or not samples:
                    continue
                rates = [s.rate for s in samples]
                rate = statistics.median(rates)
                p50 = p99 = ""
                if samples[0].latencies:
                    tails = [percentiles(s.latencies or [0.0]) for s in samples]
                    p50 = number(statistics.median(t[0] for t in tails))
                    p99 = number(statistics.median(t[1] for t in tails))
                versus = ""
                if reference and not row.key.startswith("tidelog"):
                    pairs = paired_ratios(reference, samples)
                    if pairs:
                        versus = ratio_text(statistics.median(pairs))
                        if len(pairs) > 1:
                            versus += f" ({ratio_text(min(pairs))}-{ratio_text(max(pairs))})"
                label = row.label.replace("{small}", f"{plan.small_backlog:,}")
                lines.append(
                    f"| {size} B | {WORKLOADS[workload]} | {label} | {row.durability} | {number(rate)} | "
                    f"{number(min(rates))}-{number(max(rates))} | {number(rate * (KEY_BYTES + size) / MiB)} | "
                    f"{p50} | {p99} | {versus} |"
                )
    lines += ["", "## Targets", "", "| target | size | measured (median) | met |", "|---|---:|---:|---|"]
    for text, size, value, goal, shown in targets(results, sizes):
        lines.append(f"| {text} | {size} B | {shown(value)} | {'yes' if value >= goal else '**no**'} |")
    lines += ["", "## How each case runs", "", *notes(plan), "", *per_repeat(results, sizes, plan)]
    return "\n".join(lines) + "\n"


def per_repeat(results: dict[tuple[int, str, str], list[Sample]], sizes: list[int], plan: Plan) -> list[str]:
    heads = " | ".join(f"repeat {i + 1}" for i in range(plan.repeats))
    lines = [
        "<details><summary>records/s in every repeat</summary>",
        "",
        f"| size | workload | system | {heads} |",
        "|---:|---|---|" + "---:|" * plan.repeats,
    ]
    for size in sizes:
        for row in ROWS:
            samples = results.get((size, row.workload, row.key))
            if samples:
                cells = " | ".join(number(s.rate) for s in samples)
                lines.append(f"| {size} B | {row.workload} | {row.short} | {cells} |")
    return [*lines, "", "</details>"]


def targets(
    results: dict[tuple[int, str, str], list[Sample]], sizes: list[int]
) -> list[tuple[str, int, float, float, Callable[[float], str]]]:
    found: list[tuple[str, int, float, float, Callable[[float], str]]] = []

    def rate(size: int, workload: str, key: str) -> float | None:
        samples = results.get((size, workload, key))
        return median_rate(samples) if samples else None

    def ratio(size: int, workload: str, key: str) -> float | None:
        reference, other = results.get((size, workload, "tidelog")), results.get((size, workload, key))
        pairs = paired_ratios(reference, other) if reference and other else []
        return statistics.median(pairs) if pairs else None

    for size in sizes:
        versus_raw = ratio(size, "append", "raw")
        if versus_raw:
            found.append(("(a) tidelog / os.write+fdatasync >= 0.8", size, versus_raw, 0.8, lambda v: f"{v:.2f}"))
        writers = rate(size, "writers", "tidelog")
        if writers:
            found.append(("(b) 256 writers >= 100,000 records/s", size, writers, 100_000, lambda v: f"{v:,.0f}/s"))
            for key, name in (("sqlite", "SQLite"), ("lq-full", "litequeue FULL"), ("pq", "persist-queue")):
                versus = ratio(size, "writers", key)
                if versus:
                    found.append((f"(b) tidelog / {name} >= 20x", size, versus, 20, lambda v: f"{v:,.1f}x"))
        if size == 100:
            for workload, goal, what in (("read", 1_000_000, "Record objects"), ("columns", 10_000_000, "columns")):
                for key, how in (("tidelog", "default max_bytes"), ("tidelog-fitted", "max_bytes fitted")):
                    value = rate(size, workload, key)
                    if value:
                        found.append(
                            (f"(c) read into {what} >= {goal:,}/s ({how})", size, value, goal, lambda v: f"{v:,.0f}/s")
                        )
    return found


def notes(plan: Plan) -> list[str]:
    facts = "; ".join(FACTS[k] for k in sorted(FACTS)) or "the queues did not run"
    missing = [name for name, module in (("litequeue", litequeue), ("persist-queue", persistqueue)) if module is None]
    out = [
        f"- (a) {plan.batch_calls} calls per case after 2 untimed ones (fewer if {plan.slow_seconds:g} s run out "
        "first: the persist-queue and litequeue rows). The baseline writes, per call, one magic-v2 batch of the "
        "same 100 "
        "records as tidelog stores it (`build_batch`), with `os.write` on an `O_APPEND` file, then `os.fdatasync`: "
        'the same bytes and the same sync interval as `append_many(..., durability="fsync")`; the baseline and '
        f"tidelog take turns in rounds of {ROUND_CALLS} calls (each side's time summed apart), so both see the same "
        "disk. SQLite: "
        "`journal_mode=WAL`, `synchronous=FULL` (the WAL is synced at every commit), table "
        "`(id INTEGER PRIMARY KEY, key BLOB, value BLOB)`, `BEGIN; executemany(100 INSERTs); COMMIT`. litequeue: "
        "`with queue.transaction(): queue.put(item)` x 100 (the item is key + value as one blob; litequeue's `put` "
        "runs in autocommit, and `transaction()` wraps them in one). persist-queue has no multi-put transaction: "
        "`SQLiteQueue.put` commits every time whatever `auto_commit` says (it only changes `get`), so its batch row is "
        "100 commits; the `put(list)` row stores the 100 records as one pickled item (one commit), which a reader "
        "gets back as one item.",
        f"- (b) {WRITERS} asyncio tasks in one loop, {plan.warmup_seconds:g} s of warm-up, "
        f"then {plan.writers_seconds:g} s "
        "counted; latency is the time from a writer's previous answer to this one (closed loop, so it includes "
        f"waiting for the other writers). tidelog: `await alog.append(TOPIC, value, key=key, partition=0, "
        'durability="fsync")` with the broker on the same loop; appends made in one loop turn are joined into one '
        "batch and one fdatasync. SQLite and the queues cannot join separate transactions into one commit, and "
        "sqlite3 is synchronous: each task does its one-row commit (SQLite: an autocommit INSERT; litequeue and "
        "persist-queue: `put()`) in the loop and then `await asyncio.sleep(0)`, so the 256 tasks take turns. This "
        "is the most favourable fair form found: 256 tasks going through `asyncio.to_thread` to one shared "
        "connection guarded by a lock measured about half as fast (5.5k vs 2.5k commits/s for SQLite in a trial), "
        "since every commit is serialised anyway and the thread hops add to it.",
        f"- (c) N = {plan.read_records:,} records, written untimed before each read into a fresh store. tidelog: "
        '`append_many` batches of 100 records (as in (a)), `durability="os"` and a last `"fsync"` call (readers '
        "see fsynced records only); then `log.read(TOPIC, 0, offset, max_records=10000)` until N records "
        "(`Record` objects with offset, timestamp, key, value, headers) and `log.read_columns(...)` the same way "
        "(numpy arrays), each with the default `max_bytes` (16 MiB) and with `max_bytes` fitted to 10000 records "
        "(10000 x the encoded record size). The data is in the page cache. SQLite: `executemany` in transactions "
        "of 10000, then `SELECT id, key, value FROM records ORDER BY id` and `fetchmany(10000)` until N rows "
        "(tuples). The queues are filled with the rows their `put` writes (same columns; litequeue's uuid7 ids; "
        "persist-queue's pickled items), inserted directly in large transactions to keep the run short. "
        f"litequeue: `pop()` for at most {plan.slow_seconds:g} s "
        "(a pop is a write transaction: `UPDATE ... RETURNING`; "
        "`done()` is not called), first at synchronous=FULL, then NORMAL on the same queue, and on a short queue of "
        f"{plan.small_backlog:,} records: litequeue 0.9 looks for the next message with `WHERE status = 0 ORDER BY "
        "message_id LIMIT 1`, which costs more as the backlog grows. persist-queue: `SQLiteQueue(auto_commit=False)`, "
        f"`get(block=False)` for at most {plan.slow_seconds:g} s and `task_done()` (one commit deleting what was read) "
        "every 10000 gets and at the end: its fastest durable consumer (with `auto_commit=True` every get is a delete "
        "and a commit).",
        f"- Durability as found in this run: {facts} (then set as the durability column says). litequeue's "
        "default, NORMAL in WAL mode, does not sync at commit: a commit survives a crash of the process but not of "
        'the machine (tidelog\'s `durability="os"`); its NORMAL rows are not at equal durability and are shown '
        "for reference.",
    ]
    if missing:
        out.append(f"- Not run: {', '.join(missing)} not installed ({PIP_HINT}).")
    return out


def chart(results: dict[tuple[int, str, str], list[Sample]], sizes: list[int], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("no chart: matplotlib is not installed")
        return
    panels = [
        (w, [r for r in ROWS if r.workload == w and any((s, w, r.key) in results for s in sizes)]) for w in WORKLOADS
    ]
    panels = [(w, rows) for w, rows in panels if rows]
    heights = [max(len(rows), 1) * len(sizes) * 0.32 + 0.9 for _, rows in panels]
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, sum(heights)), gridspec_kw={"height_ratios": heights})
    axes = [axes] if len(panels) == 1 else list(axes)
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    for axis, (workload, rows) in zip(axes, panels, strict=True):
        width = 0.8 / len(sizes)
        for index, size in enumerate(sizes):
            medians, low, high, ys, tops = [], [], [], [], []
            for position, row in enumerate(rows):
                samples = results.get((size, workload, row.key))
                if not samples:
                    continue
                rates = [s.rate for s in samples]
                middle = statistics.median(rates)
                medians.append(middle)
                low.append(middle - min(rates))
                high.append(max(rates) - middle)
                ys.append(position + (index - (len(sizes) - 1) / 2) * width)
                tops.append(max(rates))
            axis.barh(
                ys,
                medians,
                height=width,
                xerr=[low, high],
                color=colours[index % len(colours)],
                label=f"{size} B",
                capsize=2,
            )
            for y, value, top in zip(ys, medians, tops, strict=True):
                axis.text(top * 1.15, y, f"{value:,.0f}", va="center", fontsize=7)
        axis.set_yticks(range(len(rows)))
        axis.set_yticklabels([r.short for r in rows], fontsize=8)
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.set_title(WORKLOADS[workload], fontsize=9, loc="left")
        axis.set_xlabel("records/s (log scale; bars: median, whiskers: min-max)", fontsize=7)
        axis.tick_params(axis="x", labelsize=7)
        axis.legend(fontsize=7, loc="lower right")
        smallest = min(
            (
                statistics.median(s.rate for s in results[size, workload, r.key])
                for size in sizes
                for r in rows
                if (size, workload, r.key) in results
            ),
            default=1.0,
        )
        axis.set_xlim(left=max(smallest / 3, 1e-3), right=axis.get_xlim()[1] * 4)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    say(f"chart: {path}")


def from_report(path: Path) -> tuple[dict[tuple[int, str, str], list[Sample]], list[int]]:
    """The per-repeat figures of a report this script wrote (its <details> table)."""
    by_short = {(r.workload, r.short): r.key for r in ROWS}
    results: dict[tuple[int, str, str], list[Sample]] = {}
    sizes: list[int] = []
    inside = False
    for line in path.read_text().splitlines():
        inside = inside or line.startswith("<details>")
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not inside or len(cells) < 4 or not cells[0].endswith(" B"):
            continue
        size, workload, short = int(cells[0][:-2]), cells[1], cells[2]
        rates = [float(c.replace(",", "")) for c in cells[3:] if c]
        results[size, workload, by_short[workload, short]] = [Sample(1, 1 / r) if r else Sample(0, 1) for r in rates]
        if size not in sizes:
            sizes.append(size)
    return results, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts and 1 repeat: a smoke test, not figures")
    parser.add_argument("--sizes", default="100,1024", help="value sizes in bytes, comma-separated (default 100,1024)")
    parser.add_argument("--repeats", type=int, help="repeats of every case (default 3, 1 with --quick)")
    parser.add_argument("--read-records", type=int, help="records read in (c) (default 1,000,000)")
    parser.add_argument("--out", type=Path, help="write the markdown report here, and the chart next to it (.png)")
    parser.add_argument("--chart-only", action="store_true", help="redraw the chart of the report at --out, no run")
    args = parser.parse_args()
    if args.chart_only:
        if not args.out:
            parser.error("--chart-only needs --out (the report to draw)")
        results, sizes = from_report(args.out)
        chart(results, sizes, args.out.with_suffix(".png"))
        return
    plan = QUICK if args.quick else FULL
    if args.repeats:
        plan = Plan(**{**plan.__dict__, "repeats": args.repeats})
    if args.read_records:
        plan = Plan(**{**plan.__dict__, "read_records": args.read_records})
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if litequeue is None or persistqueue is None:
        missing = " and ".join(n for n, m in (("litequeue", litequeue), ("persist-queue", persistqueue)) if m is None)
        say(
            f"NOTE: {missing} not installed: their rows are left out. To compare with them: "
            f"{sys.executable} -m pip install litequeue persist-queue"
        )
    command = " ".join(shlex.quote(a) for a in ["python", "bench/embedded.py", *sys.argv[1:]])
    say(f"temp dir: {temp_filesystem()}")
    started, load_before, git_at_start = perf(), load_average(), git_state()
    say(f"tidelog {git_at_start}")
    results = run(plan, sizes)
    text = report(results, plan, sizes, command, (perf() - started) / 60, (load_before, load_average()), git_at_start)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        chart(results, sizes, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
