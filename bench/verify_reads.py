"""The cost of verified reads: consume throughput of a freshly opened log with read verification
on, against the same log with it off (Kafka's behaviour), and after the log was verified.

    python bench/verify_reads.py                         # about 12 minutes; writes bench/results/verify_reads.*
    python bench/verify_reads.py --gib 0.5 --repeats 1   # a smoke run, about 2 minutes (not figures)
    python bench/verify_reads.py --report-only           # rebuild the .md and .png from the .json

Fills one topic per segment size (`--segments-mib`, default 1024 and 128) with `--gib` GiB of
1 KiB records through a real broker (`tidelog serve`, filled with bench/load.py), stops it cleanly
(so every segment is trusted at the next open), then measures, each on a broker started fresh on
that data directory and reading the whole topic once:

- `off`: `tidelog.log.verify.reads=false`, the baseline;
- `fresh`: verification on, scrub off, so only the consumer's reads start the passes;
- `verified`: verification on, the scrub unthrottled (`tidelog.log.scrub.interval.ms=100`,
  `tidelog.log.scrub.bytes.per.sec=0`); the consumer starts after the broker logs `scrub verified`.

Consumers: kcat (C, `-C -e -o beginning -q`) and bench/load.py consume (confluent-kafka). Page
cache: `warm` reads the topic's segment files once just before the consumer starts, `cold` syncs
and drops the page cache (root only) at that point. Every case runs `--repeats` times, the order of
the cases rotated each round; the report gives medians, the spread (min-max) and the ratios
case / `off` of the same consumer, cache and segment size. It ends with the raw rate of a
verification pass (`PartitionLog.scrub(0, all)` in this process on the same files, one segment
after another on one thread) against a plain sequential read of the files. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "kafka"))
from reference_broker import free_port  # type: ignore[import-not-found]  # noqa: E402

RECORD_BYTES = 1024
MiB = 1 << 20
GiB = 1 << 30
READY_TIMEOUT_S = 60
SCRUB_TIMEOUT_S = 300
STOP_TIMEOUT_S = 120
READ_CHUNK_BYTES = 8 * MiB
# kcat as bench/e2e.py runs it: up to 16 MiB per partition, 64 MiB per fetch
KCAT_PARTITION_FETCH_BYTES = 16 * MiB
KCAT_FETCH = ["-X", "fetch.max.bytes=67108864", "-X", f"max.partition.fetch.bytes={KCAT_PARTITION_FETCH_BYTES}"]
# The scrub off (interval 0), so only reads verify. The recorded runs used an interval of a day
# (the documented -1 was refused by the config parser then; 0 is the off switch now).
SCRUB_NEVER = {"tidelog.log.scrub.interval.ms": "0"}
CASES: dict[str, dict[str, str]] = {
    "off": {"tidelog.log.verify.reads": "false", **SCRUB_NEVER},
    "fresh": SCRUB_NEVER,
    "verified": {"tidelog.log.scrub.interval.ms": "100", "tidelog.log.scrub.bytes.per.sec": "0"},
}
STARTED = time.monotonic()
# The fetch path's poll interval (limits.FETCH_VERIFY_POLL_S) and a shorter one, for the profile
POLLS_MS = [5.0, 1.0]
VERIFY_THREAD_NAME = "tidelog-verify"  # the engine's pass threads (rust/storage/src/verify.rs)


def say(message: str) -> None:
    sys.stderr.write(f"[{time.monotonic() - STARTED:6.0f}s] {message}\n")
    sys.stderr.flush()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a whole process (all threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int, prefix: str) -> float:
    """User + system CPU time of the threads of a process whose name starts with `prefix`."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().startswith(prefix):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass  # the thread ended
    return total


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


class Broker:
    """`tidelog serve` on a data directory; its stderr lines are collected."""

    def __init__(self, data_dir: Path, settings: dict[str, str], python_prelude: str = "") -> None:
        self.port = free_port()
        command = [sys.executable]
        if python_prelude:  # for local experiments only: code run before the broker starts
            command += ["-c", f"{python_prelude}\nimport sys\nfrom tidelog.cli.main import main\nsys.exit(main())"]
        else:
            command += ["-m", "tidelog"]
        command += ["serve", "--data-dir", str(data_dir), "--listen", self.bootstrap]
        for key, value in {"group.initial.rebalance.delay.ms": "0", **settings}.items():
            command += ["--set", f"{key}={value}"]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.scrubbed = threading.Event()
        self.scrubbed_at = 0.0
        threading.Thread(target=self._collect, daemon=True).start()
        if not self.ready.wait(READY_TIMEOUT_S) or self.process.poll() is not None:
            self.kill()
            raise RuntimeError(f"broker not ready in {READY_TIMEOUT_S}s: {''.join(self.lines[-20:])}")
        self.ready_at = time.perf_counter()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _collect(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if " ready: " in line:
                self.ready.set()
            if "scrub verified" in line and not self.scrubbed.is_set():
                self.scrubbed_at = time.perf_counter()
                self.scrubbed.set()
        self.ready.set()  # the broker exited: nobody waits for a line that cannot come

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(STOP_TIMEOUT_S)
        if code != 0:
            raise RuntimeError(f"broker exited with {code}: {''.join(self.lines[-20:])}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(STOP_TIMEOUT_S)


@dataclass
class Run:
    topic: str
    segment_mib: int
    cache: str
    consumer: str
    case: str
    round: int
    records: int
    seconds: float
    records_per_s: float
    mib_per_s: float
    broker_cpu_s: float
    scrub_s: float | None = None
    scrub_bytes: int | None = None
    verify_threads_cpu_s: float | None = None  # of that, the engine's verification threads


@dataclass
class PassRate:
    topic: str
    segment_mib: int
    cache: str
    pass_mib_per_s: float
    read_mib_per_s: float
    bytes: int


@dataclass
class LoopProfile:
    """The fetch path's loop over one whole log, in this process (no network, no client)."""

    topic: str
    segment_mib: int
    verify: bool
    poll_ms: float
    seconds: float
    mib_per_s: float
    reads: int
    short_reads: int  # served less than FETCH_BYTES though more was there: cut at the frontier
    polls: int  # reads refused as not verified yet, each followed by a poll_ms sleep


@dataclass
class Results:
    command: str
    machine: str
    gib: float
    records: int
    on_disk_bytes: dict[str, int]
    segments: dict[str, int]
    drop_caches: bool
    fill_mib_per_s: dict[str, float]
    runs: list[Run] = field(default_factory=list)
    passes: list[PassRate] = field(default_factory=list)
    loops: list[LoopProfile] = field(default_factory=list)
    minutes: float = 0.0
    appendix: str = ""  # free text after the tables (a later run's notes), kept by --report-only


def topic_name(segment_mib: int) -> str:
    return f"seg{segment_mib}"


def segment_files(data_dir: Path, topic: str) -> list[Path]:
    return sorted((data_dir / f"{topic}-0").glob("*.log"))


def fill(data_dir: Path, segments_mib: list[int], records: int) -> dict[str, float]:
    from confluent_kafka.admin import AdminClient, NewTopic

    broker = Broker(data_dir, SCRUB_NEVER)
    rates = {}
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        new = [NewTopic(topic_name(s), 1, 1, config={"segment.bytes": str(s * MiB)}) for s in segments_mib]
        for future in admin.create_topics(new).values():
            future.result(30)
        for s in segments_mib:
            say(f"filling {topic_name(s)}: {records:,} records of {RECORD_BYTES} B, segments of {s} MiB")
            result = subprocess.run(
                [
                    sys.executable,
                    str(HERE / "load.py"),
                    "produce",
                    "--bootstrap",
                    broker.bootstrap,
                    "--topic",
                    topic_name(s),
                    "--records",
                    str(records),
                    "--record-size",
                    str(RECORD_BYTES),
                    "--acks",
                    "1",
                    "--batch-size",
                    str(MiB),
                ],
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            )
            row = json.loads(result.stdout.strip().splitlines()[-1])
            assert row["errors"] == 0 and row["records"] == records, row
            rates[topic_name(s)] = row["mib_per_s"]
    finally:
        broker.stop()  # a clean shutdown: every segment is trusted at the next open
    os.sync()
    return rates


def consume_kcat(broker: Broker, topic: str, records: int) -> tuple[int, float, int]:
    """kcat reads the whole partition; returns (records, seconds, payload bytes)."""
    started = time.perf_counter()
    # one byte per record ('%p' of partition 0): counts records without printing payloads
    command = ["kcat", "-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q"]
    output = subprocess.run([*command, "-f", "%p", *KCAT_FETCH], stdout=subprocess.PIPE, check=True).stdout
    seconds = time.perf_counter() - started
    assert len(output) == records, f"kcat read {len(output)} of {records} records"
    return len(output), seconds, len(output) * RECORD_BYTES


def consume_confluent(broker: Broker, topic: str, records: int) -> tuple[int, float, int]:
    """bench/load.py consume (confluent-kafka, assign from offset 0): its own timing."""
    result = subprocess.run(
        [
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
            str(RECORD_BYTES),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        check=True,
    )
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["records"] == records, row
    return row["records"], row["seconds"], int(row["mib_per_s"] * MiB * row["seconds"])


CONSUMERS = {"kcat": consume_kcat, "confluent-kafka": consume_confluent}


def measure(
    data_dir: Path, segment_mib: int, cache: str, consumer: str, case: str, rnd: int, records: int, prelude: str
) -> Run:
    topic = topic_name(segment_mib)
    broker = Broker(data_dir, CASES[case], prelude)
    try:
        scrub_s = scrub_bytes = None
        if case == "verified":
            if not broker.scrubbed.wait(SCRUB_TIMEOUT_S):
                raise RuntimeError("no 'scrub verified' line")
            scrub_s = broker.scrubbed_at - broker.ready_at
            line = next(x for x in broker.lines if "scrub verified" in x)
            scrub_bytes = int(line.split("scrub verified ")[1].split()[0])
        if cache == "cold":
            drop_page_cache()
        else:
            read_files(segment_files(data_dir, topic))
        before = broker.cpu_seconds()
        verify_before = thread_cpu_seconds(broker.process.pid, VERIFY_THREAD_NAME)
        count, seconds, payload = CONSUMERS[consumer](broker, topic, records)
        cpu = broker.cpu_seconds() - before
        verify_cpu = thread_cpu_seconds(broker.process.pid, VERIFY_THREAD_NAME) - verify_before
    finally:
        broker.stop()
    return Run(
        topic,
        segment_mib,
        cache,
        consumer,
        case,
        rnd,
        count,
        seconds,
        count / seconds,
        payload / seconds / MiB,
        cpu,
        scrub_s,
        scrub_bytes,
        verify_cpu,
    )


def pass_rates(data_dir: Path, segments_mib: list[int], caches: list[str], can_drop: bool) -> list[PassRate]:
    """Times one whole verification pass in this process (one thread, segment after segment)
    and a plain sequential read of the same files, from a warm and a cold page cache."""
    from tidelog.config import TopicConfig
    from tidelog.storage import PartitionLog
    from tidelog.storage.unified_log import log_config_for

    rates = []
    for s in segments_mib:
        topic = topic_name(s)
        for cache in caches:
            if cache == "cold" and not can_drop:
                continue
            if cache == "cold":
                drop_page_cache()
            else:
                read_files(segment_files(data_dir, topic))
            size, read_s = read_files(segment_files(data_dir, topic))
            if cache == "cold":
                drop_page_cache()
            log, _ = PartitionLog.open(data_dir / f"{topic}-0", log_config_for(TopicConfig(segment_bytes=s * MiB)))
            pending = log.unverified_bytes
            started = time.perf_counter()
            checked = log.scrub(0, 1 << 62)
            pass_s = time.perf_counter() - started
            assert checked == pending and log.unverified_bytes == 0, (checked, pending)
            log.close()  # a clean close: the next open trusts every segment again
            rate = PassRate(topic, s, cache, checked / pass_s / MiB, size / read_s / MiB, checked)
            say(
                f"pass {topic} {cache}: {rate.pass_mib_per_s:,.0f} MiB/s over {checked / MiB:,.0f} MiB "
                f"(plain read {rate.read_mib_per_s:,.0f} MiB/s)"
            )
            rates.append(rate)
    return rates


def fetch_loops(data_dir: Path, segments_mib: list[int], polls_ms: list[float]) -> list[LoopProfile]:
    """The read loop of the fetch path without the network: `read(offset, 16 MiB, wait=False)`
    on a freshly opened log, each slice copied out (`read_into`, as the TLS path does), a read
    refused as not verified yet slept on for the poll interval and tried again, as
    core/fetch.py does. Against the same loop with verification off. Warm page cache. A consumer
    this fast (a memory copy) catches the pass's frontier far more often than a real one."""
    from tidelog.config import TopicConfig
    from tidelog.storage import NotVerifiedError, PartitionLog, set_verify_reads
    from tidelog.storage.unified_log import log_config_for

    buffer = bytearray(KCAT_PARTITION_FETCH_BYTES + MiB)
    view = memoryview(buffer)
    profiles = []
    for s in segments_mib:
        topic = topic_name(s)
        for verify, poll_ms in [(False, 0.0), *((True, p) for p in polls_ms)]:
            read_files(segment_files(data_dir, topic))
            set_verify_reads(verify)
            log, _ = PartitionLog.open(data_dir / f"{topic}-0", log_config_for(TopicConfig(segment_bytes=s * MiB)))
            end = log.log_end_offset
            offset = reads = short = polls = 0
            copied = 0
            started = time.perf_counter()
            while offset < end:
                try:
                    piece = log.read(offset, KCAT_PARTITION_FETCH_BYTES, end, True, False)
                except NotVerifiedError:
                    polls += 1
                    time.sleep(poll_ms / 1000)
                    continue
                assert piece is not None
                piece.read_into(view[: piece.size])
                reads += 1
                copied += piece.size
                short += piece.size < KCAT_PARTITION_FETCH_BYTES - MiB and piece.last_offset + 1 < end
                offset = piece.last_offset + 1
            seconds = time.perf_counter() - started
            log.close()
            set_verify_reads(True)
            profile = LoopProfile(topic, s, verify, poll_ms, seconds, copied / seconds / MiB, reads, short, polls)
            say(
                f"fetch loop {topic} verify={verify} poll {poll_ms} ms: {profile.mib_per_s:,.0f} MiB/s, "
                f"{reads} reads ({short} short), {polls} polls"
            )
            profiles.append(profile)
    return profiles


def median_and_spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def groups(results: Results) -> list[tuple[int, str, str]]:
    seen: list[tuple[int, str, str]] = []
    for r in results.runs:
        key = (r.segment_mib, r.cache, r.consumer)
        if key not in seen:
            seen.append(key)
    return seen


def case_runs(results: Results, key: tuple[int, str, str], case: str) -> list[Run]:
    return [r for r in results.runs if (r.segment_mib, r.cache, r.consumer) == key and r.case == case]


def report(results: Results) -> str:
    lines = [
        "| segments | cache | consumer | case | MiB/s median (min-max) | records/s median | "
        "ratio vs off (min-max) | target | broker CPU s | scrub s (MiB/s) |",
        "|---|---|---|---|---:|---:|---:|---|---:|---:|",
    ]
    targets = {"off": "baseline", "fresh": "≥ 0.9", "verified": "1.0"}
    for key in groups(results):
        off = case_runs(results, key, "off")
        off_median = statistics.median(r.mib_per_s for r in off) if off else None
        for case in CASES:
            runs = case_runs(results, key, case)
            if not runs:
                continue
            mib, low, high = median_and_spread([r.mib_per_s for r in runs])
            records = statistics.median(r.records_per_s for r in runs)
            cpu = f"{statistics.median(r.broker_cpu_s for r in runs):.1f}"
            passes_cpu = [r.verify_threads_cpu_s for r in runs if r.verify_threads_cpu_s is not None]
            if passes_cpu:
                cpu += f" ({statistics.median(passes_cpu):.1f})"
            if off_median:
                # each round's run against the median baseline; the median ratio is the medians'
                ratios = [r.mib_per_s / off_median for r in runs]
                ratio = f"{mib / off_median:.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            else:
                ratio = ""
            scrubs = [r for r in runs if r.scrub_s]
            scrub = ""
            if scrubs:
                s = statistics.median(r.scrub_s for r in scrubs if r.scrub_s)
                b = statistics.median(r.scrub_bytes for r in scrubs if r.scrub_bytes)
                scrub = f"{s:.1f} ({b / s / MiB:,.0f})"
            lines.append(
                f"| {key[0]} MiB | {key[1]} | {key[2]} | {case} | {mib:,.0f} ({low:,.0f}-{high:,.0f}) | "
                f"{records:,.0f} | {ratio} | {targets[case]} | {cpu} | {scrub} |"
            )
    passes = [
        "| segments | cache | verification pass MiB/s | plain sequential read MiB/s | MiB |",
        "|---|---|---:|---:|---:|",
    ]
    for p in results.passes:
        passes.append(
            f"| {p.segment_mib} MiB | {p.cache} | {p.pass_mib_per_s:,.0f} | {p.read_mib_per_s:,.0f} | "
            f"{p.bytes / MiB:,.0f} |"
        )
    loops_text = ""
    if results.loops:
        rows = [
            "| segments | verification | poll ms | MiB/s | ratio vs off | reads | short reads | polls | slept ms |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in results.loops:
            off = next(x for x in results.loops if x.topic == p.topic and not x.verify)
            rows.append(
                f"| {p.segment_mib} MiB | {'on' if p.verify else 'off'} | {p.poll_ms:g} | {p.mib_per_s:,.0f} | "
                f"{off.seconds / p.seconds:.2f} | {p.reads} | {p.short_reads} | {p.polls} | {p.polls * p.poll_ms:.0f} |"
            )
        loops_text = (
            "The fetch path's read loop without network or client, in this process on the same files (warm): "
            f"`read(offset, {KCAT_PARTITION_FETCH_BYTES // MiB} MiB, wait=False)`, each slice copied out, a read "
            "refused as not verified yet slept on for the poll interval and tried again (as core/fetch.py does "
            "with `FETCH_VERIFY_POLL_S`); short reads were cut at the pass's frontier. A consumer this fast (a "
            "memory copy) reaches the frontier far more often than a real one:\n\n" + "\n".join(rows)
        )
    sizes = ", ".join(
        f"{t}: {results.on_disk_bytes[t] / GiB:.2f} GiB in {results.segments[t]} segments" for t in results.segments
    )
    fills = ", ".join(f"{t} {v:,.0f} MiB/s" for t, v in results.fill_mib_per_s.items())
    cache_note = (
        "`cold`: `sync` and `echo 3 > /proc/sys/vm/drop_caches` after the broker started (and after the scrub "
        "for `verified`), so the consumer and the passes read from the disk"
        if results.drop_caches
        else "dropping the page cache was refused (not root): no `cold` runs"
    )
    return f"""# Cost of verified reads (issue 14)

Rerun: `{results.command}` ({results.minutes:.0f} minutes). Machine: {results.machine}.
Neither the broker nor the clients are pinned; other work may share the machine during the run,
so single figures are noisy: compare medians, and read the spread.

Data: {results.records:,} records of {RECORD_BYTES} B per topic ({results.gib:g} GiB of payload), one
partition, filled by bench/load.py with acks=1 through `tidelog serve` ({fills}), then a clean
shutdown, so every segment is trusted at the next open. On disk: {sizes}.

Each run starts `tidelog serve` on that data directory and reads the whole topic once from
offset 0, then stops the broker: `off` = `tidelog.log.verify.reads=false` (Kafka's behaviour, the
baseline); `fresh` = verification on, the scrub off (`tidelog.log.scrub.interval.ms=0`; these
runs used an interval of a day), so the consumer's reads start the passes (one per segment, on
the engine's `VERIFY_PASS_THREADS`);
`verified` = the scrub unthrottled (`interval.ms=100`, `bytes.per.sec=0`), the consumer started
after the broker logged `scrub verified` (the scrub's time and rate in the last column; it
verified both topics). kcat: `kcat -C -t TOPIC -p 0 -o beginning -e -q -f %p`
with `fetch.max.bytes=64 MiB`, `max.partition.fetch.bytes=16 MiB`, timed from its start to its
exit; confluent-kafka: bench/load.py consume, its own timing (after `assign`). Page cache: `warm` =
the topic's files read once just before the consumer starts; {cache_note}. Each case ran
{max(r.round for r in results.runs) + 1 if results.runs else 0} times (the order of the cases
rotated each round). Ratio = case median / `off` median of the same row group (in brackets: each
run against that median). Broker CPU s: user + system time of the broker (all threads) while the
consumer ran; in brackets, when measured, that of the engine's verification threads alone.

{chr(10).join(lines)}

Raw rate of a verification pass: `PartitionLog.scrub(0, all)` in the bench's process on the same
files (one thread, one segment after another, as a scrub runs it; a consumer's pass is the same
loop, on a pool thread), against reading the same files sequentially in 8 MiB `readinto` calls:

{chr(10).join(passes)}

{loops_text}
{results.appendix}
![MiB/s per case](verify_reads.png)
"""


def chart(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = groups(results)
    figure, panel = plt.subplots(figsize=(max(8, 1.6 * len(keys)), 5.5))
    width = 0.27
    for i, case in enumerate(CASES):
        medians, low, high = [], [], []
        for key in keys:
            values = [r.mib_per_s for r in case_runs(results, key, case)] or [0.0]
            m, lo, hi = median_and_spread(values)
            medians.append(m)
            low.append(m - lo)
            high.append(hi - m)
        xs = [k + (i - 1) * width for k in range(len(keys))]
        panel.bar(xs, medians, width, yerr=[low, high], capsize=3, label=case)
    panel.set_xticks(range(len(keys)), [f"{s} MiB seg.\n{c}, {n}" for s, c, n in keys], fontsize=8)
    panel.set_ylabel("consume MiB/s (median, min-max)")
    panel.grid(axis="y", alpha=0.3)
    panel.legend(title="verification")
    panel.set_title("Consuming a freshly opened log: verification off / on (fresh) / on (after the scrub)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def load_results(path: Path) -> Results:
    raw = json.loads(path.read_text())
    raw["runs"] = [Run(**r) for r in raw["runs"]]
    raw["passes"] = [PassRate(**p) for p in raw["passes"]]
    raw["loops"] = [LoopProfile(**p) for p in raw.get("loops", [])]
    return Results(**raw)


def write(results: Results, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(asdict(results), indent=1) + "\n")
    text = report(results)
    out.write_text(text)
    try:
        chart(results, out.with_suffix(".png"))
    except ImportError:
        say("matplotlib missing: no chart (pip install matplotlib)")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=3.0, help="GiB of payload per topic")
    parser.add_argument("--segments-mib", default="1024,128", help="segment sizes, one topic each")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--caches", default="warm,cold")
    parser.add_argument("--consumers", default="kcat,confluent-kafka")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "verify_reads.md")
    parser.add_argument(
        "--profile-only", action="store_true", help="with --keep: redo the pass rates and fetch loops into the .json"
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the .md and .png from the .json")
    parser.add_argument("--keep", type=Path, help="fill this data directory once and keep it (reused when filled)")
    parser.add_argument(
        "--broker-prelude", default="", help="Python run in the broker before it starts (local experiments only)"
    )
    args = parser.parse_args()
    if args.report_only:
        results = load_results(args.out.with_suffix(".json"))
        write(results, args.out)
        return
    segments_mib = [int(s) for s in args.segments_mib.split(",")]
    if args.profile_only:
        results = load_results(args.out.with_suffix(".json"))
        results.passes = pass_rates(args.keep, segments_mib, args.caches.split(","), drop_page_cache())
        results.loops = fetch_loops(args.keep, segments_mib, POLLS_MS)
        write(results, args.out)
        return
    caches = args.caches.split(",")
    consumers = args.consumers.split(",")
    cases = args.cases.split(",")
    if "kcat" in consumers and shutil.which("kcat") is None:
        say("kcat not found: confluent-kafka only")
        consumers.remove("kcat")
    can_drop = drop_page_cache()
    if "cold" in caches and not can_drop:
        say("cannot drop the page cache (not root): warm runs only")
        caches.remove("cold")
    records = int(args.gib * GiB) // RECORD_BYTES
    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="tidelog-verify-reads-"))
    machine = (
        f"{platform.node()}: {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}"
    )
    try:
        marker = data_dir / "bench-filled.json"
        if marker.exists():
            fill_rates = json.loads(marker.read_text())
            say(f"reusing {data_dir}")
        else:
            fill_rates = fill(data_dir, segments_mib, records)
            if args.keep:
                marker.write_text(json.dumps(fill_rates))
        topics = [topic_name(s) for s in segments_mib]
        results = Results(
            command=" ".join(["python", "bench/verify_reads.py", *sys.argv[1:]]),
            machine=machine,
            gib=args.gib,
            records=records + 1,  # load.py's warm-up record
            on_disk_bytes={t: sum(p.stat().st_size for p in segment_files(data_dir, t)) for t in topics},
            segments={t: len(segment_files(data_dir, t)) for t in topics},
            drop_caches=can_drop,
            fill_mib_per_s=fill_rates,
        )
        total = args.repeats * len(caches) * len(segments_mib) * len(consumers) * len(cases)
        for rnd in range(args.repeats):
            order = cases[rnd % len(cases) :] + cases[: rnd % len(cases)]
            for cache in caches:
                for s in segments_mib:
                    for consumer in consumers:
                        for case in order:
                            run = measure(data_dir, s, cache, consumer, case, rnd, results.records, args.broker_prelude)
                            results.runs.append(run)
                            extra = f", scrub {run.scrub_s:.1f} s" if run.scrub_s else ""
                            say(
                                f"{len(results.runs)}/{total} round {rnd + 1} {s} MiB {cache} {consumer} {case}: "
                                f"{run.mib_per_s:,.0f} MiB/s, {run.records_per_s:,.0f} records/s, "
                                f"broker CPU {run.broker_cpu_s:.1f} s (passes {run.verify_threads_cpu_s:.1f} s){extra}"
                            )
        results.passes = pass_rates(data_dir, segments_mib, caches, can_drop)
        results.loops = fetch_loops(data_dir, segments_mib, POLLS_MS)
        results.minutes = (time.monotonic() - STARTED) / 60
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    write(results, args.out)


if __name__ == "__main__":
    main()
