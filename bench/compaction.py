"""Log compaction (issue 15): how fast the cleaner works, against a plain read of the same files
and against Apache Kafka 4.4's cleaner on the same data, and what it costs producers meanwhile.

    python bench/compaction.py --gib 1           # about 6 minutes; writes bench/results/compaction.{md,png,json}
    python bench/compaction.py --gib 0.25 --repeats 1 --out /tmp/c.md   # a smoke run (not figures)
    python bench/compaction.py --report-only     # rebuild the .md and .png from the .json

The data: `--gib` GiB of 1 KiB values under keys of which each is written 10 times, so 10% of the
records are live; the writes are shuffled (seeded), so every segment holds superseded records.
Batches of 16 records (16 KiB, a Java producer's default batch size), built once and used for
every case; segments of 64 MiB. Measured, each from a warm page cache (the input read just before)
and a cold one (`sync; echo 3 > /proc/sys/vm/drop_caches`, root only):

- (a) the engine alone: `Cleaner(dedupe_buffer_bytes, io_bytes_per_sec).clean(log, ...)` on a
  `PartitionLog` in this process (the broker's defaults: a 128 MiB offset map, no throttle), on a
  fresh copy of the log each run: MiB/s of input (every segment but the active one);
- (b) a broker's pass: `tidelog serve` and Kafka 4.4 (bench/kafka/reference_broker.py), both with
  `log.cleaner.backoff.ms=100` and their default cleaner settings, each given the same batches
  over the wire (Produce v9, acks=all, byte for byte the same) into a topic created with
  `cleanup.policy=delete`, then switched to `compact` (IncrementalAlterConfigs): the rate each
  broker logs for its pass (tidelog: `cleaned <topic>-0: ... in N ms`; Kafka: from its
  `Beginning cleaning of log` line to its `Log cleaner thread 0 cleaned log` stats). Afterwards
  both topics are read back whole (confluent-kafka): the same number of records, the expected
  count (each key once below the active segment, plus the active segment) and every key's latest
  value;
- (c) the baseline: the same segment files read sequentially (8 MiB `readinto`);
- (d) tidelog only: a confluent-kafka producer (acks=all, 1 KiB, load.py's settings) on a
  non-compacted topic, at maximum rate and at 50 MiB/s, for `--produce-seconds`, once while the
  cleaner cleans a `--gib` GiB partition (switched to `compact` 2 s into the run) and once with it
  idle; throughput and p99 in the window the pass ran (the idle run: the same window of its own
  run). `--repeats` times each, order alternating; medians.

Nothing is pinned to a CPU. Progress goes to stderr, the report to `--out` (and a .json beside
it, and a chart), one JSON line of results to stdout. No figure here is an assertion.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE / "kafka"))

MiB = 1 << 20
GiB = 1 << 30
RECORD_BYTES = 1024
RECORDS_PER_BATCH = 16
WRITES_PER_KEY = 10
SEGMENT_BYTES = 64 * MiB
SEED = 15
CLEANER_BACKOFF_MS = 100
READ_CHUNK_BYTES = 8 * MiB
PIPELINE = 48  # Produce requests in flight while filling (tidelog reads up to 64 ahead)
PASS_TIMEOUT_S = 900
FLIP_AFTER_S = 2.0  # (d): the busy partition turns compact this long after the producer starts
FIXED_RATE_MIB = 50
SETTLE_S = 1.0  # (d): sync, then this pause before each run
WARMUP_S = 0.5  # (d): the first half second of a run counts in no window
CLIENT_ID = b"compaction-bench"
STARTED = time.monotonic()
TIDELOG, KAFKA = "tidelog", "Kafka 4.4"
TIDELOG_CLEANED = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ \S+: cleaned (?P<topic>\S+)-(?P<p>\d+): "
    r"(?P<sin>\d+) segment\(s\) -> (?P<sout>\d+), (?P<bin>\d+) -> (?P<bout>\d+) bytes, "
    r"(?P<rin>\d+) -> (?P<rout>\d+) records in (?P<ms>\d+) ms",
    re.M,
)
KAFKA_BEGIN = r"^\[(?P<ts>[^\]]+)\] INFO Cleaner \d+: Beginning cleaning of log {tp}\b"
KAFKA_STATS = (
    r"^\[(?P<ts>[^\]]+)\] INFO \[kafka-log-cleaner-thread-\d+\]: \s*"
    r"Log cleaner thread \d+ cleaned log {tp} \(dirty section = \[\d+, \d+\]\)\s*"
    r"(?P<mb>[\d,.]+) MB of log processed in (?P<s>[\d,.]+) seconds \((?P<rate>[\d,.]+) MB/sec\)\."
    r".*?Start size: [\d,.]+ MB \((?P<rin>[\d,]+) messages\)\s*End size: (?P<mbout>[\d,.]+) MB "
    r"\((?P<rout>[\d,]+) messages\)"
)


def say(message: str) -> None:
    sys.stderr.write(f"[{time.monotonic() - STARTED:6.0f}s] {message}\n")
    sys.stderr.flush()


def log_time(stamp: str) -> float:
    """A log line's local time (`2026-01-31 12:00:00,123`, as both brokers write it) as epoch seconds."""
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def drop_page_cache() -> bool:
    """Writes back dirty pages and drops clean ones (root only); False when refused."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def read_files(paths: list[Path]) -> tuple[int, float]:
    """Reads the files once, sequentially; returns (bytes, seconds)."""
    buffer = bytearray(READ_CHUNK_BYTES)
    total = 0
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buffer):
                total += n
    return total, time.perf_counter() - started


def input_segments(directory: Path) -> list[Path]:
    """The segments a pass may clean: all but the active (last) one."""
    return sorted(directory.glob("*.log"))[:-1]


# ---- the data -----------------------------------------------------------------------------------


@dataclass
class Data:
    batches: list[bytes]
    key_of_offset: np.ndarray  # the key id written at each offset
    keys: int
    records: int

    @property
    def batch_bytes(self) -> int:
        return sum(len(b) for b in self.batches)

    def expected_kept(self, first_uncleaned: int) -> int:
        """Records a full pass keeps when everything below `first_uncleaned` was cleaned: each key
        once below it, and every record from it on."""
        below = np.unique(self.key_of_offset[:first_uncleaned]).size
        return int(below + self.records - first_uncleaned)


def build_data(gib: float) -> Data:
    from tidelog.protocol.record_batch import build_batch

    keys = max(1, round(gib * GiB / RECORD_BYTES / WRITES_PER_KEY))
    order = np.random.default_rng(SEED).permutation(np.repeat(np.arange(keys), WRITES_PER_KEY))
    names = [b"key-%09d" % k for k in range(keys)]
    versions = [0] * keys
    pad = bytes(RECORD_BYTES)
    now = int(time.time() * 1000)
    batches = []
    ids = order.tolist()
    for start in range(0, len(ids), RECORDS_PER_BATCH):
        records = []
        for k in ids[start : start + RECORDS_PER_BATCH]:
            head = b"%d:%d:" % (k, versions[k])  # the value names its key and its write
            versions[k] += 1
            records.append((now, names[k], head + pad[len(head) :], ()))
        batches.append(build_batch(records))
    return Data(batches, order, keys, len(ids))


def engine_config() -> Any:
    from tidelog.config import TopicConfig
    from tidelog.storage.unified_log import log_config_for

    return log_config_for(TopicConfig(segment_bytes=SEGMENT_BYTES, cleanup_policy="compact"))


def write_log(data: Data, directory: Path) -> None:
    from tidelog.storage import PartitionLog

    log, _ = PartitionLog.open(directory, engine_config())
    now = int(time.time() * 1000)
    for batch in data.batches:
        log.append(batch, now)
    log.flush()
    log.close()
    os.sync()


# ---- (a) the engine, (c) the plain read ------------------------------------------------------------


@dataclass
class Pass:
    """One cleaning pass (a, b) or one plain read (c)."""

    case: str
    cache: str
    round: int
    bytes_in: int
    seconds: float
    mib_per_s: float
    bytes_out: int = 0
    records_in: int = 0
    records_out: int = 0
    segments_in: int = 0
    segments_out: int = 0
    reported_mib_per_s: float | None = None  # what the broker's own line says
    wall_s: float | None = None  # (b): from the switch to compact to the pass's line


def engine_pass(pristine: Path, scratch: Path, cache: str, rnd: int) -> Pass:
    from tidelog.config import BrokerConfig
    from tidelog.storage import Cleaner, PartitionLog

    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(pristine, scratch)
    os.sync()
    log, _ = PartitionLog.open(scratch, engine_config())
    if cache == "cold":
        drop_page_cache()
    else:
        read_files(input_segments(scratch))
    defaults = BrokerConfig()
    cleaner = Cleaner(defaults.log_cleaner_dedupe_buffer_size, defaults.log_cleaner_io_max_bytes_per_second)
    started = time.perf_counter()
    report = cleaner.clean(log, int(time.time() * 1000), log.log_end_offset, [])
    seconds = time.perf_counter() - started
    log.close()
    shutil.rmtree(scratch, ignore_errors=True)
    if report is None:
        raise RuntimeError("the engine's cleaner found nothing to clean")
    return Pass(
        "engine",
        cache,
        rnd,
        report.bytes_read,
        seconds,
        report.bytes_read / seconds / MiB,
        report.bytes_written,
        report.records_read,
        report.records_retained,
        report.segments_read,
        report.segments_written,
        report.bytes_read / max(report.duration_ms, 1) * 1000 / MiB,
    )


def read_pass(directory: Path, cache: str, rnd: int) -> Pass:
    paths = input_segments(directory)
    if cache == "cold":
        drop_page_cache()
    else:
        read_files(paths)
    size, seconds = read_files(paths)
    return Pass("plain read", cache, rnd, size, seconds, size / seconds / MiB, segments_in=len(paths))


# ---- filling a broker over the wire --------------------------------------------------------------


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def produce_frame(topic: str, batch: bytes, correlation_id: int, acks: int = -1) -> bytes:
    """A Produce v9 request (flexible) for partition 0 carrying `batch`, encoded by hand (checked
    against kio's encoding in `fill`)."""
    name = topic.encode()
    header = struct.pack(">hhih", 0, 9, correlation_id, len(CLIENT_ID)) + CLIENT_ID + b"\x00"
    body = (
        b"\x00"  # transactional_id: null
        + struct.pack(">hi", acks, 30_000)
        + uvarint(2)  # one topic
        + uvarint(len(name) + 1)
        + name
        + uvarint(2)  # one partition
        + struct.pack(">i", 0)
        + uvarint(len(batch) + 1)
        + batch
        + b"\x00\x00\x00"  # tagged fields: partition, topic, request
    )
    return struct.pack(">i", len(header) + len(body)) + header + body


def check_frame_encoding(topic: str, batch: bytes) -> None:
    from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData

    from tests.server.wire_client import encode_request

    data = TopicProduceData(name=topic, partition_data=(PartitionProduceData(index=0, records=batch),))  # type: ignore[arg-type]
    request = ProduceRequest(transactional_id=None, acks=-1, timeout=datetime.timedelta(seconds=30), topic_data=(data,))  # type: ignore[arg-type]
    expected = encode_request(0, 9, request, 7, client_id=CLIENT_ID.decode())
    assert produce_frame(topic, batch, 7) == expected, "hand-encoded Produce v9 differs from kio's"


def fill(port: int, topic: str, batches: list[bytes]) -> float:
    """Sends every batch to partition 0 of `topic`, in order, PIPELINE requests in flight, acks=all;
    checks each answer; returns MiB/s."""
    import socket

    import kio.index
    import kio.serial

    check_frame_encoding(topic, batches[0])
    response_type = kio.index.load_response_schema(0, 9)
    read_response = kio.serial.entity_reader(response_type)
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream = sock.makefile("rb")
    sent = answered = 0
    next_offset = 0
    started = time.perf_counter()
    try:
        while answered < len(batches):
            while sent < len(batches) and sent - answered < PIPELINE:
                sock.sendall(produce_frame(topic, batches[sent], sent))
                sent += 1
            (size,) = struct.unpack(">i", stream.read(4))
            frame = stream.read(size)
            (correlation_id,) = struct.unpack_from(">i", frame)
            assert correlation_id == answered, (correlation_id, answered)
            response: Any = read_response(frame, 5)[0]
            partition = response.responses[0].partition_responses[0]
            assert partition.error_code == 0 and partition.base_offset == next_offset, (topic, partition)
            next_offset += struct.unpack_from(">i", batches[answered], 57)[0]  # the batch's record count
            answered += 1
    finally:
        sock.close()
    seconds = time.perf_counter() - started
    return sum(len(b) for b in batches) / seconds / MiB


# ---- brokers ---------------------------------------------------------------------------------------


class TidelogBroker:
    name = TIDELOG

    def __init__(self, data_dir: Path) -> None:
        from tests.server.conftest import BrokerProcess, free_port

        settings = {"log.cleaner.backoff.ms": str(CLEANER_BACKOFF_MS), "group.initial.rebalance.delay.ms": "0"}
        self.process = BrokerProcess(data_dir, free_port(), settings).start()
        self.port = self.process.port
        self.logs = data_dir

    def text(self) -> str:
        return self.process.log_text()

    def cpu_pid(self) -> int:
        assert self.process.process is not None
        return self.process.process.pid

    def find_pass(self, topic: str) -> dict[str, Any] | None:
        for match in TIDELOG_CLEANED.finditer(self.text()):
            if match["topic"] == topic and match["p"] == "0":
                end = log_time(match["ts"])
                seconds = int(match["ms"]) / 1000
                return {
                    "end": end,
                    "start": end - seconds,
                    "seconds": seconds,
                    "bytes_in": int(match["bin"]),
                    "bytes_out": int(match["bout"]),
                    "records_in": int(match["rin"]),
                    "records_out": int(match["rout"]),
                    "reported_mib_per_s": int(match["bin"]) / max(seconds, 1e-3) / MiB,
                    "passes": sum(1 for m in TIDELOG_CLEANED.finditer(self.text()) if m["topic"] == topic),
                }
        return None

    def stop(self) -> None:
        ADMINS.pop(self.port, None)
        code = self.process.stop()
        if code != 0:
            say(f"tidelog exited with {code}")


class KafkaBroker:
    name = KAFKA

    def __init__(self, data_dir: Path) -> None:
        import reference_broker as rb  # type: ignore[import-not-found]

        self.rb = rb
        self.port = rb.free_port()
        self.proc = rb.start(data_dir, self.port, settings={"log.cleaner.backoff.ms": str(CLEANER_BACKOFF_MS)})
        self.server_log = data_dir / "server.log"
        self.logs = data_dir / "logs"

    def text(self) -> str:
        return self.server_log.read_text(errors="replace")

    def find_pass(self, topic: str) -> dict[str, Any] | None:
        tp = re.escape(f"{topic}-0")
        text = self.text()
        stats = re.search(KAFKA_STATS.format(tp=tp), text, re.M | re.S)
        begin = re.search(KAFKA_BEGIN.format(tp=tp), text, re.M)
        if stats is None or begin is None:
            return None
        start, end = log_time(begin["ts"]), log_time(stats["ts"])
        seconds = end - start
        mib_in = float(stats["mb"].replace(",", ""))
        return {
            "end": end,
            "start": start,
            "seconds": seconds,
            "bytes_in": int(mib_in * MiB),
            "bytes_out": int(float(stats["mbout"].replace(",", "")) * MiB),
            "records_in": int(stats["rin"].replace(",", "")),
            "records_out": int(stats["rout"].replace(",", "")),
            "reported_mib_per_s": float(stats["rate"].replace(",", "")),
            "reported_seconds": float(stats["s"].replace(",", "")),
            "passes": len(re.findall(KAFKA_STATS.format(tp=tp), text, re.M | re.S)),
        }

    def stop(self) -> None:
        ADMINS.pop(self.port, None)
        self.rb.stop(self.proc)


ADMINS: dict[int, Any] = {}


def admin_for(port: int) -> Any:
    """One admin client per broker, kept: a client dropped before its futures end fails them."""
    from confluent_kafka.admin import AdminClient

    if port not in ADMINS:
        ADMINS[port] = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
    return ADMINS[port]


def create_topic(port: int, topic: str) -> None:
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    config = {"cleanup.policy": "delete", "segment.bytes": str(SEGMENT_BYTES), "retention.ms": "-1"}
    admin = admin_for(port)
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # Kafka answers NOT_LEADER_OR_FOLLOWER until its leader is in place
        partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
        if 0 in partitions and partitions[0].leader >= 0 and partitions[0].error is None:
            time.sleep(0.5)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{topic} has no leader")


def delete_topic(port: int, topic: str) -> None:
    admin_for(port).delete_topics([topic])[topic].result(60)


def make_compact(port: int, topic: str) -> None:
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource  # type: ignore[attr-defined]

    entry = ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", topic, incremental_configs=[entry])
    admin_for(port).incremental_alter_configs([resource])[resource].result(60)


def wait_for_pass(broker: TidelogBroker | KafkaBroker, topic: str, timeout_s: float = PASS_TIMEOUT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = broker.find_pass(topic)
        if found is not None:
            return found
        time.sleep(0.1)
    raise RuntimeError(f"{broker.name}: no cleaning pass of {topic} in {timeout_s} s")


def broker_pass(broker: TidelogBroker | KafkaBroker, topic: str, cache: str) -> Pass:
    directory = broker.logs / f"{topic}-0"
    os.sync()
    inputs = input_segments(directory)
    size = sum(p.stat().st_size for p in inputs)
    if cache == "cold":
        drop_page_cache()
    else:
        read_files(inputs)
    switched = time.time()
    make_compact(broker.port, topic)
    found = wait_for_pass(broker, topic)
    if found["passes"] > 1:
        say(f"  {broker.name} cleaned {topic} in {found['passes']} passes; the first is reported")
    if abs(found["bytes_in"] - size) > MiB:
        say(f"  {broker.name} read {found['bytes_in']:,} bytes; the input segments hold {size:,}")
    return Pass(
        broker.name,
        cache,
        0,
        size,
        found["seconds"],
        size / found["seconds"] / MiB,
        found["bytes_out"],
        found["records_in"],
        found["records_out"],
        len(inputs),
        len(input_segments(directory)),  # what the pass left below the active segment
        found["reported_mib_per_s"],
        found["end"] - switched,
    )


@dataclass
class ReadBack:
    broker: str
    topic: str
    records: int
    keys: int
    latest_ok: bool
    expected_records: int
    first_uncleaned: int


def read_back(broker: TidelogBroker | KafkaBroker, topic: str, data: Data) -> ReadBack:
    """Reads the whole partition; checks every key's latest value is there."""
    from confluent_kafka import Consumer, TopicPartition

    directory = broker.logs / f"{topic}-0"
    first_uncleaned = int(sorted(directory.glob("*.log"))[-1].stem)
    consumer = Consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{broker.port}",
            "group.id": "compaction-bench",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * MiB,
            "max.partition.fetch.bytes": 16 * MiB,
        }
    )
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    consumer.assign([TopicPartition(topic, 0, 0)])
    latest: dict[int, int] = {}
    count = 0
    last = -1
    deadline = time.monotonic() + 300
    while last < high - 1 and time.monotonic() < deadline:
        for message in consumer.consume(10_000, 1.0):
            if message.error():
                raise RuntimeError(f"{broker.name} {topic}: {message.error()}")
            value, offset = message.value(), message.offset()
            assert value is not None and offset is not None
            key, version = value[:24].split(b":")[:2]
            latest[int(key)] = max(latest.get(int(key), -1), int(version))
            count += 1
            last = offset
    consumer.close()
    ok = len(latest) == data.keys and all(v == WRITES_PER_KEY - 1 for v in latest.values())
    return ReadBack(broker.name, topic, count, len(latest), ok, data.expected_kept(first_uncleaned), first_uncleaned)


# ---- (d) producers while the cleaner runs ----------------------------------------------------------


def producer_child(bootstrap: str, topic: str, rate: float, seconds: float, out: str) -> None:
    """Runs in its own process: produces 1 KiB records for `seconds` (at `rate` records/s, 0 =
    as fast as possible) and saves each delivery's time and latency."""
    from confluent_kafka import Producer

    capacity = 1 << 22
    times = np.empty(capacity, dtype=np.float64)
    latencies = np.empty(capacity, dtype=np.float64)
    delivered = errors = 0

    def on_delivery(error: object, message: Any) -> None:
        nonlocal delivered, errors
        if error is not None:
            errors += 1
            return
        if delivered < capacity:
            times[delivered] = time.time()
            latencies[delivered] = message.latency()
        delivered += 1

    producer = Producer(  # bench/load.py's settings
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 256 * 1024,
            "queue.buffering.max.kbytes": 1 << 20,
            "queue.buffering.max.messages": 1_000_000,
            "socket.nagle.disable": True,
            "enable.idempotence": False,
        }
    )
    payload = np.random.default_rng(1).bytes(RECORD_BYTES)
    producer.produce(topic, payload, partition=0)  # warm-up: connection, metadata
    producer.flush()
    interval = 1.0 / rate if rate else 0.0
    started = time.time()
    deadline = started + seconds
    sent = 0
    while True:
        if interval:
            producer.poll(0)
            wait = started + sent * interval - time.time()
            if wait > 0:
                time.sleep(wait)
            if time.time() >= deadline:
                break
        elif sent % 1000 == 0:
            producer.poll(0)
            if time.time() >= deadline:
                break
        while True:
            try:
                producer.produce(topic, payload, partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.001)
        sent += 1
    producer.flush()
    kept = min(delivered, capacity)
    np.savez(out, started=started, deadline=deadline, times=times[:kept], latencies=latencies[:kept], errors=errors)


@dataclass
class LoadRun:
    mode: str  # "max" or "50 MiB/s"
    cleaner: str  # "idle" or "cleaning"
    round: int
    seconds: float
    mib_per_s_run: float  # the whole run
    window_start_s: float = 0.0  # relative to the run's start
    window_s: float = 0.0
    mib_per_s: float = 0.0  # inside the window
    p99_ms: float = 0.0
    pass_s: float = 0.0  # (cleaning) the pass's length, and how much of it the run covered
    pass_covered: float = 0.0
    pass_mib_per_s: float = 0.0
    outside_mib_per_s: float = 0.0  # the same run outside the window (its first WARMUP_S left out)
    errors: int = 0


def load_run(
    broker: TidelogBroker, mode: str, rate: float, seconds: float, busy: str | None, rnd: int, work: Path
) -> tuple[LoadRun, dict[str, Any]]:
    topic = f"load-{rnd}-{'max' if not rate else 'fixed'}-{'cleaning' if busy else 'idle'}"
    os.sync()  # the previous run's writeback and deleted topic settle first
    time.sleep(SETTLE_S)
    create_topic(broker.port, topic)
    out = work / f"{topic}.npz"
    bootstrap = f"127.0.0.1:{broker.port}"
    command = [sys.executable, str(Path(__file__).resolve()), "--producer-child", bootstrap, topic]
    child = subprocess.Popen([*command, str(rate), str(seconds), str(out)])
    found: dict[str, Any] = {}
    try:
        if busy:
            time.sleep(FLIP_AFTER_S)
            make_compact(broker.port, busy)
        if child.wait(seconds + 120) != 0:
            raise RuntimeError(f"producer exited with {child.returncode}")
        if busy:
            found = wait_for_pass(broker, busy)
    finally:
        if child.poll() is None:
            child.kill()
    arrays = dict(np.load(out))
    out.unlink()
    delete_topic(broker.port, topic)
    started, deadline = float(arrays["started"]), float(arrays["deadline"])
    delivered = arrays["times"]
    run = LoadRun(
        mode,
        "cleaning" if busy else "idle",
        rnd,
        deadline - started,
        int((delivered <= deadline).sum()) * RECORD_BYTES / (deadline - started) / MiB,
        errors=int(arrays["errors"]),
    )
    if found:
        run.pass_s = found["seconds"]
        window = (max(found["start"], started), min(found["end"], deadline))
        run.pass_covered = max(0.0, window[1] - window[0]) / found["seconds"]
        run.pass_mib_per_s = found["bytes_in"] / found["seconds"] / MiB
        run.window_start_s, run.window_s = window[0] - started, max(0.0, window[1] - window[0])
    return run, arrays


def in_window(run: LoadRun, arrays: dict[str, Any], start_s: float, length_s: float) -> None:
    """Throughput and p99 of the deliveries inside [start, start + length] of the run."""
    started, deadline = float(arrays["started"]), float(arrays["deadline"])
    begin = started + start_s
    times = arrays["times"]
    inside = (times >= begin) & (times <= begin + length_s)
    run.window_start_s, run.window_s = start_s, length_s
    outside_s = deadline - started - WARMUP_S - length_s
    if outside_s > 0:
        outside = (times >= started + WARMUP_S) & (times <= deadline) & ~inside
        run.outside_mib_per_s = int(outside.sum()) * RECORD_BYTES / outside_s / MiB
    if length_s > 0:
        run.mib_per_s = int(inside.sum()) * RECORD_BYTES / length_s / MiB
        if inside.any():
            run.p99_ms = float(np.percentile(arrays["latencies"][inside] * 1000, 99))


def load_runs(broker: TidelogBroker, busy_topics: list[str], repeats: int, seconds: float, work: Path) -> list[LoadRun]:
    modes = [("max", 0.0), (f"{FIXED_RATE_MIB} MiB/s", FIXED_RATE_MIB * MiB / RECORD_BYTES)]
    runs: list[LoadRun] = []
    busy = iter(busy_topics)
    for rnd in range(repeats):
        for mode, rate in modes:
            pair: dict[str, tuple[LoadRun, dict[str, Any]]] = {}
            for cleaner in ("idle", "cleaning") if rnd % 2 == 0 else ("cleaning", "idle"):
                partition = next(busy) if cleaner == "cleaning" else None
                pair[cleaner] = load_run(broker, mode, rate, seconds, partition, rnd, work)
            cleaning, idle = pair["cleaning"], pair["idle"]
            in_window(cleaning[0], cleaning[1], cleaning[0].window_start_s, cleaning[0].window_s)
            in_window(idle[0], idle[1], cleaning[0].window_start_s, cleaning[0].window_s)
            for run, _ in (idle, cleaning):
                runs.append(run)
            c, i = cleaning[0], idle[0]
            say(
                f"  (d) round {rnd + 1} {mode}: idle {i.mib_per_s:,.0f} MiB/s p99 {i.p99_ms:.1f} ms, cleaning "
                f"{c.mib_per_s:,.0f} MiB/s p99 {c.p99_ms:.1f} ms (pass {c.pass_s:.1f} s at {c.pass_mib_per_s:,.0f} "
                f"MiB/s, {c.pass_covered:.0%} inside the run); ratio {c.mib_per_s / max(i.mib_per_s, 1e-9):.2f}"
            )
    return runs


# ---- the run -----------------------------------------------------------------------------------------


@dataclass
class Results:
    command: str
    date: str
    machine: list[str]
    gib: float
    records: int
    keys: int
    batches: int
    batch_bytes: int
    drop_caches: bool
    repeats: int
    produce_seconds: float
    passes: list[Pass] = field(default_factory=list)
    read_backs: list[ReadBack] = field(default_factory=list)
    loads: list[LoadRun] = field(default_factory=list)
    fills: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    minutes: float = 0.0


def git_state() -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD").strip() or "?"
    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if line.strip()]
    return f"{commit} with uncommitted changes in {', '.join(dirty)}" if dirty else f"{commit} (clean working tree)"


def engine_binary() -> Path:
    from tidelog.storage import PartitionLog

    return Path(sys.modules[PartitionLog.__module__].__file__ or "")


def engine_digest() -> str:
    import hashlib

    return hashlib.sha256(engine_binary().read_bytes()).hexdigest()[:12]


def machine_facts() -> list[str]:
    cpu = memory = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f"{kib / (1 << 20):.0f} GiB"
    filesystem = "?"
    where = os.path.realpath(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        best = ""
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, kind = line.split()[:3]
            if (where == mount or where.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                best, filesystem = mount, kind
    binary = engine_binary().read_bytes()
    build = "DEBUG build" if b"precondition_check" in binary else "optimised build"
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    return [
        f"{os.cpu_count()} CPUs ({cpu}), {memory} RAM, Linux {platform.release()}, temp directory on {filesystem}",
        f"tidelog {git_state()} when the run started; engine {build} (sha256 {engine_digest()}); "
        f"Python {platform.python_version()}",
        f"Kafka 4.4.0 on {java[0] if java else 'java ?'}, heap 1 GiB (bench/kafka/reference_broker.py)",
    ]


def median_spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def case_passes(results: Results, case: str, cache: str) -> list[Pass]:
    return [p for p in results.passes if p.case == case and p.cache == cache]


def median_rate(results: Results, case: str, cache: str) -> float | None:
    found = case_passes(results, case, cache)
    return statistics.median(p.mib_per_s for p in found) if found else None


CASE_ORDER = ["plain read", "engine", TIDELOG, KAFKA]
CASE_LABELS = {
    "plain read": "(c) plain read of the input (baseline)",
    "engine": "(a) engine: `Cleaner.clean` in process",
    TIDELOG: "(b) tidelog broker pass",
    KAFKA: "(b) Kafka 4.4 broker pass",
}
TARGETS = {"engine": "≥ 200 MiB/s"}
CHART_LABELS = {
    "plain read": "plain read\n(baseline)",
    "engine": "engine\nCleaner.clean",
    TIDELOG: "tidelog\nbroker pass",
    KAFKA: "Kafka 4.4\nbroker pass",
}
CASE_KEYS = {"plain read": "plain_read", "engine": "engine", TIDELOG: "tidelog_broker", KAFKA: "kafka_broker"}


def summary(results: Results) -> dict[str, Any]:
    out: dict[str, Any] = {"gib": results.gib}
    for case in CASE_ORDER:
        for cache in ("warm", "cold"):
            rate = median_rate(results, case, cache)
            if rate is not None:
                out[f"{CASE_KEYS[case]}_{cache}_mib_per_s"] = round(rate, 1)
    for cache in ("warm", "cold"):
        ours, theirs = median_rate(results, TIDELOG, cache), median_rate(results, KAFKA, cache)
        if ours and theirs:
            out[f"tidelog_over_kafka_{cache}"] = round(ours / theirs, 2)
    for mode, name in (("max", "max_rate"), (f"{FIXED_RATE_MIB} MiB/s", f"fixed_{FIXED_RATE_MIB}_mib_per_s")):
        ratios = load_ratios(results, mode)
        if ratios:
            out[f"produce_cleaning_over_idle_{name}"] = round(statistics.median(ratios), 3)
        inner = [
            r.mib_per_s / r.outside_mib_per_s
            for r in results.loads
            if r.mode == mode and r.cleaner == "cleaning" and r.outside_mib_per_s > 0
        ]
        if inner:
            out[f"produce_window_over_rest_of_run_{name}"] = round(statistics.median(inner), 3)
    out["records_kept_as_expected"] = bool(results.read_backs) and all(
        r.records == r.expected_records and r.latest_ok for r in results.read_backs
    )
    out["minutes"] = round(results.minutes, 1)
    return out


def load_ratios(results: Results, mode: str) -> list[float]:
    ratios = []
    for rnd in sorted({r.round for r in results.loads}):
        pair = {r.cleaner: r for r in results.loads if r.mode == mode and r.round == rnd}
        if "idle" in pair and "cleaning" in pair and pair["idle"].mib_per_s > 0:
            ratios.append(pair["cleaning"].mib_per_s / pair["idle"].mib_per_s)
    return ratios


def report(results: Results) -> str:
    rows = [
        "| case | cache | MiB/s of input, median (min-max) | runs | vs plain read | target | input → output MiB | "
        "records in → kept | segments in → out |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for case in CASE_ORDER:
        for cache in ("warm", "cold"):
            found = case_passes(results, case, cache)
            if not found:
                continue
            median, low, high = median_spread([p.mib_per_s for p in found])
            base = median_rate(results, "plain read", cache)
            versus = "baseline" if case == "plain read" else (f"{median / base:.2f}" if base else "")
            p = found[0]
            moved = f"{p.bytes_in / MiB:,.0f} → {p.bytes_out / MiB:,.1f}" if case != "plain read" else ""
            kept = f"{p.records_in:,} → {p.records_out:,}" if case != "plain read" else ""
            segments = f"{p.segments_in} → {p.segments_out}" if case != "plain read" else f"{p.segments_in}"
            spread = f"{median:,.0f} ({low:,.0f}-{high:,.0f})" if len(found) > 1 else f"{median:,.0f}"
            rows.append(
                f"| {CASE_LABELS[case]} | {cache} | {spread} | {len(found)} | {versus} | {TARGETS.get(case, '')} | "
                f"{moved} | {kept} | {segments} |"
            )
    versus_rows = [
        "| cache | tidelog MiB/s | Kafka MiB/s | tidelog / Kafka | tidelog's own line | Kafka's own stats | "
        "switch to line seen, tidelog / Kafka |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cache in ("warm", "cold"):
        ours, theirs = case_passes(results, TIDELOG, cache), case_passes(results, KAFKA, cache)
        if ours and theirs:
            o, t = ours[0], theirs[0]
            versus_rows.append(
                f"| {cache} | {o.mib_per_s:,.0f} | {t.mib_per_s:,.0f} | {o.mib_per_s / t.mib_per_s:.2f} | "
                f"{o.reported_mib_per_s or 0:,.1f} MiB/s in {o.seconds:.2f} s | {t.reported_mib_per_s or 0:,.1f} "
                f"MB/sec | {o.wall_s or 0:.2f} s / {t.wall_s or 0:.2f} s |"
            )
    back_rows = [
        "| broker | topic | records read back | expected | keys | every key's latest value | active segment from |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for back in results.read_backs:
        back_rows.append(
            f"| {back.broker} | {back.topic} | {back.records:,} | {back.expected_records:,} | {back.keys:,} | "
            f"{'yes' if back.latest_ok else 'NO'} | {back.first_uncleaned:,} |"
        )
    load_rows = [
        "| producer | cleaner idle MiB/s | while cleaning MiB/s | ratio, median (min-max) | target | p99 idle ms | "
        "p99 cleaning ms | window s | pass s (MiB/s) | cleaning run outside its window MiB/s | "
        "ratio window / outside, median |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    detail_rows = [
        "| round | producer | cleaner | window MiB/s | p99 ms | window s | same run outside the window MiB/s | "
        "whole run MiB/s | pass s | pass MiB/s | pass inside the run |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in [m for m in ("max", f"{FIXED_RATE_MIB} MiB/s") if any(r.mode == m for r in results.loads)]:
        idle = [r for r in results.loads if r.mode == mode and r.cleaner == "idle"]
        busy = [r for r in results.loads if r.mode == mode and r.cleaner == "cleaning"]
        ratios = load_ratios(results, mode)
        ratio = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else ""
        inner = [r.mib_per_s / r.outside_mib_per_s for r in busy if r.outside_mib_per_s > 0]
        within = f"{statistics.median(inner):.2f} ({min(inner):.2f}-{max(inner):.2f})" if inner else ""

        def med(runs: list[LoadRun], name: str) -> float:
            return statistics.median(getattr(r, name) for r in runs) if runs else 0.0

        load_rows.append(
            f"| {mode} | {med(idle, 'mib_per_s'):,.0f} | {med(busy, 'mib_per_s'):,.0f} | {ratio} | ≥ 0.9 | "
            f"{med(idle, 'p99_ms'):.1f} | {med(busy, 'p99_ms'):.1f} | {med(busy, 'window_s'):.1f} | "
            f"{med(busy, 'pass_s'):.1f} ({med(busy, 'pass_mib_per_s'):,.0f}) | "
            f"{med(busy, 'outside_mib_per_s'):,.0f} | {within} |"
        )
        for r in sorted(idle + busy, key=lambda r: (r.round, r.cleaner)):
            pass_cells = (
                f"{r.pass_s:.1f} | {r.pass_mib_per_s:,.0f} | {r.pass_covered:.0%}" if r.cleaner == "cleaning" else "| |"
            )
            detail_rows.append(
                f"| {r.round + 1} | {mode} | {r.cleaner} | {r.mib_per_s:,.0f} | {r.p99_ms:.1f} | {r.window_s:.1f} | "
                f"{r.outside_mib_per_s:,.0f} | {r.mib_per_s_run:,.0f} | {pass_cells} |"
            )
    cache_note = (
        "`cold` = `sync` and `echo 3 > /proc/sys/vm/drop_caches` just before the pass (or the read)"
        if results.drop_caches
        else "dropping the page cache was refused (not root): no `cold` runs"
    )
    fills = ", ".join(f"{k} {v:,.0f} MiB/s" for k, v in results.fills.items())
    notes = "".join(f"- {n}\n" for n in results.notes)
    machine = "".join(f"- {m}\n" for m in results.machine)
    return f"""# Log compaction benchmarks (issue 15)

Run on {results.date} with `{results.command}` ({results.minutes:.0f} minutes).

{machine}- Nothing is pinned to a CPU; the machine has other work at times: compare figures of the same run.

**Data.** {results.records:,} records of {RECORD_BYTES} B values ({results.gib:g} GiB) under {results.keys:,} keys,
each key written {WRITES_PER_KEY} times (10% of the records live), the writes shuffled (seed {SEED});
{results.batches:,} batches of {RECORDS_PER_BATCH} records ({results.batch_bytes / MiB:,.0f} MiB), segments of
{SEGMENT_BYTES // MiB} MiB. A pass cleans every segment but the active one. Page cache: `warm` = the input files
read just before the pass; {cache_note}. MiB/s is input bytes (the segments cleaned) over the pass's time.

## Cleaner throughput

{chr(10).join(rows)}

(a) runs `--repeats` times on a fresh copy of the log, the broker's defaults (`log.cleaner.dedupe.buffer.size`
128 MiB, no I/O throttle); time = the `clean()` call. (b) one pass per broker and cache, on a topic filled
over the wire with the same batches (Produce v9, acks=all; {fills}) as `cleanup.policy=delete`, then switched
to `compact` with `log.cleaner.backoff.ms={CLEANER_BACKOFF_MS}`. tidelog's time is the `in N ms` of its
`cleaned` line; Kafka's runs from its `Beginning cleaning of log` line to its `Log cleaner thread 0 cleaned log`
stats (its own "MB/sec" has 0.1 s resolution: beside it below). Both brokers use one cleaner thread and
a 128 MiB offset map (their defaults). (c) reads the same input files once, sequentially, in 8 MiB
`readinto` calls: the ceiling of a pass that reads its input once (a pass reads it twice: offset map,
then copy; and writes and fsyncs {100 // WRITES_PER_KEY}% of it).

## tidelog against Kafka 4.4 on the same data

{chr(10).join(versus_rows)}

Read back afterwards (confluent-kafka, the whole partition): both brokers must keep the same
records: each key once below the active segment, plus the active segment, and every key's latest value.

{chr(10).join(back_rows)}

## Producing while the cleaner runs (tidelog)

A confluent-kafka producer (acks=all, {RECORD_BYTES} B records, bench/load.py's settings: linger.ms=5,
batch.size 256 KiB) on a new non-compacted topic for {results.produce_seconds:g} s, at maximum rate and at
{FIXED_RATE_MIB} MiB/s; in the `cleaning` run a {results.gib:g} GiB partition (the data above, just written,
so warm) is switched to `compact` {FLIP_AFTER_S:g} s in. Throughput and p99 (librdkafka's
latency, produce() to delivery report) count the deliveries inside the window the pass ran, and for the
`idle` run the same window of its own run. {results.repeats} rounds, the order of idle and cleaning
alternating, each after a `sync` and a {SETTLE_S:g} s pause; ratio = cleaning / idle within a round. The
second ratio compares the cleaning run's window with the rest of the same run (its first
{WARMUP_S:g} s left out): no run-to-run noise, but the pass sits in the run's first half, where
a producer is still warming up. At maximum rate the client's queue is always
full, so its p99 is time spent queueing in the client; at {FIXED_RATE_MIB} MiB/s it is the broker's.

{chr(10).join(load_rows)}

Every run:

{chr(10).join(detail_rows)}

{notes}
![MiB/s per case](compaction.png)
"""


def chart(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    cases = [c for c in CASE_ORDER if any(p.case == c for p in results.passes)]
    width = 0.38
    for i, cache in enumerate(("warm", "cold")):
        medians, low, high = [], [], []
        for case in cases:
            values = [p.mib_per_s for p in case_passes(results, case, cache)] or [0.0]
            m, lo, hi = median_spread(values)
            medians.append(m)
            low.append(m - lo)
            high.append(hi - m)
        xs = [k + (i - 0.5) * width for k in range(len(cases))]
        bars = left.bar(xs, medians, width, yerr=[low, high], capsize=3, label=f"{cache} page cache")
        left.bar_label(bars, [f"{m:,.0f}" if m else "" for m in medians], fontsize=8, padding=2)
    left.set_xticks(range(len(cases)), [CHART_LABELS[c] for c in cases], fontsize=8)
    left.set_yscale("log")  # a warm plain read is a memory copy, an order of magnitude above the rest
    left.set_ylabel("MiB/s of input (median, min-max; log scale)")
    left.set_title(f"Cleaning {results.gib:g} GiB, 10% live keys, 64 MiB segments")
    left.grid(axis="y", alpha=0.3)
    left.legend()
    modes = [m for m in ("max", f"{FIXED_RATE_MIB} MiB/s") if any(r.mode == m for r in results.loads)]
    for i, cleaner in enumerate(("idle", "cleaning")):
        medians = []
        for mode in modes:
            values = [r.mib_per_s for r in results.loads if r.mode == mode and r.cleaner == cleaner] or [0.0]
            medians.append(statistics.median(values))
        xs = [k + (i - 0.5) * width for k in range(len(modes))]
        bars = right.bar(xs, medians, width, label=f"cleaner {cleaner}")
        right.bar_label(bars, [f"{m:,.0f}" for m in medians], fontsize=8, padding=2)
    right.set_xticks(range(len(modes)), [f"producer: {m}" for m in modes], fontsize=8)
    right.set_ylabel("produce MiB/s, acks=all (median)")
    right.set_title("tidelog: producing while a partition is cleaned")
    right.grid(axis="y", alpha=0.3)
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: Results, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(asdict(results), indent=1) + "\n")
    out.write_text(report(results))
    try:
        chart(results, out.with_suffix(".png"))
    except ImportError:
        say("matplotlib missing: no chart")


def load_results(path: Path) -> Results:
    raw = json.loads(path.read_text())
    raw["passes"] = [Pass(**p) for p in raw["passes"]]
    raw["read_backs"] = [ReadBack(**r) for r in raw["read_backs"]]
    raw["loads"] = [LoadRun(**r) for r in raw["loads"]]
    return Results(**raw)


def run(args: argparse.Namespace) -> Results:
    can_drop = drop_page_cache()
    caches = ["warm", "cold"] if can_drop else ["warm"]
    if not can_drop:
        say("cannot drop the page cache (not root): warm runs only")
    say(f"building {args.gib:g} GiB of batches")
    data = build_data(args.gib)
    results = Results(
        command=" ".join([".venv/bin/python", "bench/compaction.py", *sys.argv[1:]]),
        date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        machine=machine_facts(),
        gib=args.gib,
        records=data.records,
        keys=data.keys,
        batches=len(data.batches),
        batch_bytes=data.batch_bytes,
        drop_caches=can_drop,
        repeats=args.repeats,
        produce_seconds=args.produce_seconds,
    )
    if not can_drop:
        results.notes.append("The page cache could not be dropped (not root): warm runs only.")
    git_at_start, engine_at_start = git_state(), engine_digest()
    load_at_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="tidelog-bench-compaction-"))
    try:
        # (a) and (c)
        pristine = work / "engine" / "pristine"
        say("writing the log for the engine runs")
        write_log(data, pristine)
        for rnd in range(args.repeats):
            for cache in caches if rnd % 2 == 0 else caches[::-1]:
                for measure in ("read", "engine"):
                    if measure == "read":
                        p = read_pass(pristine, cache, rnd)
                    else:
                        p = engine_pass(pristine, work / "engine" / "scratch", cache, rnd)
                    results.passes.append(p)
                    say(f"  round {rnd + 1} {p.case} {cache}: {p.mib_per_s:,.0f} MiB/s ({p.bytes_in / MiB:,.0f} MiB)")
        shutil.rmtree(work / "engine", ignore_errors=True)
        # (b) and (d): tidelog
        brokers: list[type[TidelogBroker] | type[KafkaBroker]] = [TidelogBroker]
        if args.no_kafka:
            results.notes.append("Kafka was not run (--no-kafka).")
        elif shutil.which("java") is None or not any((ROOT / ".cache" / "kafka" / "libs").glob("kafka_2.13-*.jar")):
            results.notes.append("Kafka was not run: no java or no jars in .cache/kafka (make kafka-jars).")
        else:
            brokers.append(KafkaBroker)
        for kind in brokers:
            directory = work / kind.name.split()[0].lower()
            say(f"starting {kind.name}")
            broker = kind(directory)
            try:
                for cache in caches:
                    topic = f"compact-{cache}"
                    create_topic(broker.port, topic)
                    say(f"  filling {topic} over the wire")
                    results.fills[f"{kind.name} {topic}"] = fill(broker.port, topic, data.batches)
                for cache in caches:
                    p = broker_pass(broker, f"compact-{cache}", cache)
                    results.passes.append(p)
                    say(
                        f"  {kind.name} pass {cache}: {p.mib_per_s:,.0f} MiB/s, {p.seconds:.2f} s, "
                        f"{p.records_in:,} -> {p.records_out:,} records (own figure {p.reported_mib_per_s:,.1f})"
                    )
                for cache in caches:
                    back = read_back(broker, f"compact-{cache}", data)
                    results.read_backs.append(back)
                    say(
                        f"  read back {kind.name} compact-{cache}: {back.records:,} records (expected "
                        f"{back.expected_records:,}), {back.keys:,} keys, "
                        f"latest values {'ok' if back.latest_ok else 'WRONG'}"
                    )
                if isinstance(broker, TidelogBroker) and args.repeats > 0 and not args.no_load:
                    busy_topics = [f"busy-{i}" for i in range(2 * args.repeats)]
                    for topic in busy_topics:
                        create_topic(broker.port, topic)
                        say(f"  filling {topic} (for (d))")
                        fill(broker.port, topic, data.batches)
                    os.sync()
                    results.loads = load_runs(broker, busy_topics, args.repeats, args.produce_seconds, work)
            finally:
                broker.stop()
            shutil.rmtree(directory, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if git_state() != git_at_start:
        results.notes.append(f"The working tree changed during the run (at the end: {git_state()}).")
    if engine_digest() != engine_at_start:
        results.notes.append(
            f"The engine binary changed during the run (sha256 {engine_digest()} at the end): the brokers "
            "started after the change ran the new one."
        )
    load_at_end = os.getloadavg()
    results.notes.append(
        "Load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}; at the end: {:.2f} {:.2f} {:.2f} "
        "(this run alone keeps about one CPU busy).".format(*load_at_start, *load_at_end)
    )
    counts = {r.records for r in results.read_backs}
    if len(counts) > 1:
        results.notes.append(f"The read-back counts differ: {sorted(counts)}.")
    results.minutes = (time.monotonic() - STARTED) / 60
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--producer-child":
        bootstrap, topic, rate, seconds, out = sys.argv[2:7]
        producer_child(bootstrap, topic, float(rate), float(seconds), out)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=1.0, help="GiB of values in the compacted partition")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (a), (c) and (d)")
    parser.add_argument("--produce-seconds", type=float, default=10.0, help="length of each (d) producer run")
    parser.add_argument("--no-kafka", action="store_true", help="tidelog only")
    parser.add_argument("--no-load", action="store_true", help="skip (d)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "compaction.md")
    parser.add_argument("--report-only", action="store_true", help="rebuild the .md and .png from the .json")
    args = parser.parse_args()
    results = load_results(args.out.with_suffix(".json")) if args.report_only else run(args)
    write(results, args.out)
    say(f"wrote {args.out}")
    print(json.dumps(summary(results)))


if __name__ == "__main__":
    main()
