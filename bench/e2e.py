"""End-to-end figures for tidelog on this machine, in one run.

    python bench/e2e.py [--records 2000000] [--out bench/results/e2e.md]

Starts `tidelog serve` on a fresh data directory pinned to CPU 0 (twice: durable acks, the
default, and page-cache acks), drives it from CPU 1 with bench/load.py (confluent-kafka),
bench/wire_latency.py (no client library) and kcat when present, and prints a markdown table.
Progress goes to stderr. No figure here is a test assertion.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "kafka"))
from reference_broker import free_port  # type: ignore[import-not-found]  # noqa: E402

RECORD_BYTES = 1024
HALF_RATE_MIB = 50
READY_TIMEOUT_S = 30
MiB = 1 << 20


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1 else []  # type: ignore[operator]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a whole process (all threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Broker:
    def __init__(self, durable: bool, settings: dict[str, str] | None = None) -> None:
        self.directory = tempfile.mkdtemp(prefix="tidelog-e2e-")
        self.port = free_port()
        command = [
            *pinned(0),
            sys.executable,
            "-m",
            "tidelog",
            "serve",
            "--data-dir",
            self.directory,
            "--listen",
            f"127.0.0.1:{self.port}",
            "--set",
            f"tidelog.flush.before.ack={str(durable).lower()}",
            # as the reference Kafka is set up: a group's first rebalance does not wait
            "--set",
            "group.initial.rebalance.delay.ms=0",
        ]
        for key, value in (settings or {}).items():
            command += ["--set", f"{key}={value}"]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        assert self.process.stderr is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        for line in self.process.stderr:
            if " ready: " in line:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("broker did not start")
        os.set_blocking(self.process.stderr.fileno(), False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        shutil.rmtree(self.directory, ignore_errors=True)


def settle_page_cache() -> None:
    """Writes back dirty pages and, as root, drops clean ones, so each scenario starts from the
    same page-cache state instead of paying for the previous one's writeback and reclaim."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        pass  # not root: only the sync


def run_tool(broker: Broker, script: str, *args: str, settle: bool = True) -> dict[str, object]:
    if settle:
        settle_page_cache()
    before = broker.cpu_seconds()
    result = subprocess.run(
        [*pinned(1), sys.executable, str(HERE / script), *args], stdout=subprocess.PIPE, text=True, check=True
    )
    row: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    row["broker_cpu_s"] = broker.cpu_seconds() - before
    return row


def kcat_consume(broker: Broker, topic: str, records: int) -> dict[str, object] | None:
    if shutil.which("kcat") is None:
        return None
    before = broker.cpu_seconds()  # no settling: the consumer reads what the producer left cached
    started = time.perf_counter()
    command = [
        *pinned(1),
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
        "-e",
        "-q",
        "-f",
        "%p",
        "-X",
        "fetch.max.bytes=67108864",
        "-X",
        "max.partition.fetch.bytes=16777216",
    ]
    output = subprocess.run(command, stdout=subprocess.PIPE, check=True).stdout
    seconds = time.perf_counter() - started
    assert len(output) >= records, f"kcat read {len(output)} of {records}"  # plus the warm-up record
    return {
        "records_per_s": len(output) / seconds,
        "mib_per_s": len(output) * RECORD_BYTES / seconds / MiB,
        "broker_cpu_s": broker.cpu_seconds() - before,
    }


def scenarios(broker: Broker, durable: bool, records: int) -> list[tuple[str, dict[str, object]]]:
    label = "durable" if durable else "page-cache"
    base = ["--bootstrap", broker.bootstrap, "--records", str(records), "--record-size", str(RECORD_BYTES)]
    half_rate = str(HALF_RATE_MIB * MiB // RECORD_BYTES)
    rows = []
    for name, extra in [
        (f"produce acks=1, max ({label})", ["--topic", "max-1", "--acks", "1"]),
        (f"produce acks=all, max ({label})", ["--topic", "max-all", "--acks", "all"]),
        (
            f"produce acks=all, {HALF_RATE_MIB} MiB/s ({label})",
            ["--topic", "half-all", "--acks", "all", "--rate", half_rate, "--linger-ms", "1"],
        ),
        (
            f"produce acks=1, {HALF_RATE_MIB} MiB/s ({label})",
            ["--topic", "half-1", "--acks", "1", "--rate", half_rate, "--linger-ms", "1"],
        ),
    ]:
        sys.stderr.write(f"== {name}\n")
        rows.append((name, run_tool(broker, "load.py", "produce", *base, *extra)))
    sys.stderr.write("== consume (from the page cache: the topic is read once to warm it)\n")
    kcat_consume(broker, "max-1", records)
    rows.append(
        (
            f"consume, confluent-kafka ({label})",
            run_tool(broker, "load.py", "consume", *base, "--topic", "max-1", settle=False),
        )
    )
    kcat = kcat_consume(broker, "max-1", records)
    if kcat is not None:
        rows.append((f"consume, kcat ({label})", kcat))
    rate = str(HALF_RATE_MIB * MiB // (16 * RECORD_BYTES))
    for acks in ("-1", "1"):
        rows.append(
            (
                f"wire round trip acks={acks}, ~{HALF_RATE_MIB} MiB/s ({label})",
                run_tool(broker, "wire_latency.py", "--bootstrap", broker.bootstrap, "--acks", acks, "--rate", rate),
            )
        )
    return rows


def table(rows: list[tuple[str, dict[str, object]]]) -> str:
    def cell(row: dict[str, object], key: str, digits: int = 1) -> str:
        value = row.get(key)
        return "" if value is None else f"{float(value):,.{digits}f}"  # type: ignore[arg-type]

    lines = [
        "| scenario | records/s | MiB/s | p50 ms | p99 ms | p99.9 ms | broker CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows:
        lines.append(
            f"| {name} | {cell(row, 'records_per_s', 0)} | {cell(row, 'mib_per_s')} | {cell(row, 'p50_ms', 2)} | "
            f"{cell(row, 'p99_ms', 2)} | {cell(row, 'p999_ms', 2)} | {cell(row, 'broker_cpu_s')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows: list[tuple[str, dict[str, object]]] = []
    for durable in (True, False):
        broker = Broker(durable)
        try:
            rows += scenarios(broker, durable, args.records)
        finally:
            broker.stop()
    machine = (
        f"{platform.node()}: {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}"
    )
    report = (
        f"Machine: {machine}. Broker on CPU 0, client on CPU 1. Records of {RECORD_BYTES} B, "
        f"{args.records:,} per scenario; rerun with `python bench/e2e.py`.\n\n{table(rows)}\n"
    )
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)


if __name__ == "__main__":
    main()
