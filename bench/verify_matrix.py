#!/usr/bin/env python3
"""`tidelog verify` against tidelog (durable acks, the default; page-cache acks) and Apache
Kafka 4.4, each with the same seeds, with no faults, with proxy faults (also "guarded": with
`--flush-before-abort --no-replays`), and with broker SIGKILLs (`--kill-broker`), one run at a
time; writes the results table to bench/results/verify.md.

    .venv/bin/python bench/verify_matrix.py [--duration 300] [--workload txn] [--seeds 1]
        [--targets tidelog-durable,tidelog-page-cache,kafka] [--modes none,proxy,proxy-guarded,kill]

Each run gets a fresh broker. A supervisor thread restarts the broker whenever it exits, and
the kill command verify runs is `kill -KILL <the broker's pid>`: verify then waits for the
cluster to answer again. Histories, results and plots of every run stay in
.cache/verify-matrix/<target>-<mode>-<seed>/.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench" / "kafka"))
import reference_broker as rb  # type: ignore[import-not-found]  # noqa: E402

OUT = ROOT / "bench" / "results" / "verify.md"
RUNS = ROOT / ".cache" / "verify-matrix"
READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 60
# verify's own time on top of --duration: start, workers' end, final reads, report.
RUN_OVERHEAD_TIMEOUT_S = 600
TARGETS = ("tidelog-durable", "tidelog-page-cache", "kafka")
# proxy-guarded: proxy faults with the two client anomalies of docs/verify.md kept out (the
# workers flush before each deliberate abort; the proxy replays nothing).
GUARDED = "proxy-guarded"
MODES = ("none", "proxy", GUARDED, "kill")
TIDELOG_SETTINGS = {
    "tidelog-durable": {},
    "tidelog-page-cache": {"tidelog.flush.before.ack": "false"},
}
SHOWN = (
    "lost-write",
    "unseen",
    "duplicate",
    "inconsistent-offsets",
    "aborted-read",
    "uncommitted-read",
    "poll-skip",
    "nonmonotonic-poll",
    "G0",
)


class Supervised:
    """A broker kept running: restarted whenever it exits, until stop(); its pid in `pid_file`."""

    def __init__(self, target: str, data: Path, port: int) -> None:
        self.target, self.data, self.port = target, data, port
        self.pid_file = data.parent / f"{data.name}.pid"
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.restarts = -1
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._keep, daemon=True)

    def start(self) -> Supervised:
        self.thread.start()
        if not self.ready.wait(READY_TIMEOUT_S * 4):
            raise RuntimeError(f"{self.target} did not start")
        return self

    def _launch(self) -> subprocess.Popen[bytes]:
        if self.target == "kafka":
            return rb.start(self.data, self.port)  # type: ignore[no-any-return]
        command = [
            sys.executable,
            "-m",
            "tidelog",
            "serve",
            "--data-dir",
            str(self.data),
            "--listen",
            f"127.0.0.1:{self.port}",
        ]
        for key, value in TIDELOG_SETTINGS[self.target].items():
            command += ["--set", f"{key}={value}"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return process
            except OSError:
                time.sleep(0.1)
        return process

    def _keep(self) -> None:
        while not self.stopping:
            self.process = self._launch()
            self.restarts += 1
            self.pid_file.write_text(str(self.process.pid))
            self.ready.set()
            self.process.wait()

    def kill_command(self) -> str:
        return f"kill -KILL $(cat {shlex.quote(str(self.pid_file))})"

    def stop(self) -> None:
        self.stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.thread.join(STOP_TIMEOUT_S)


def run_one(target: str, mode: str, seed: int, duration: float, workload: str) -> dict[str, object]:
    report = RUNS / f"{target}-{mode}-{workload}-{seed}"
    with tempfile.TemporaryDirectory(prefix="verify-matrix-") as scratch:
        broker = Supervised(target, Path(scratch) / "data", rb.free_port()).start()
        try:
            command = [
                sys.executable,
                "-m",
                "tidelog",
                "verify",
                "--bootstrap",
                f"127.0.0.1:{broker.port}",
                "--duration",
                str(duration),
                "--workload",
                workload,
                "--seed",
                str(seed),
                "--report",
                str(report),
                "--no-progress",
                "--faults",
                "proxy" if mode in ("proxy", GUARDED) else "none",
            ]
            if mode == GUARDED:
                command += ["--flush-before-abort", "--no-replays"]
            if mode == "kill":
                command += ["--kill-broker", broker.kill_command()]
            started = time.monotonic()
            done = subprocess.run(command, capture_output=True, text=True, timeout=duration + RUN_OVERHEAD_TIMEOUT_S)
            elapsed = time.monotonic() - started
        finally:
            broker.stop()
    if report.exists():
        (report / "output.txt").write_text(done.stdout + done.stderr)
    results = json.loads((report / "results.json").read_text()) if (report / "results.json").exists() else None
    return {
        "target": target,
        "mode": mode,
        "seed": seed,
        "status": done.returncode,
        "elapsed": elapsed,
        "results": results,
        "restarts": broker.restarts,
        "tail": (done.stdout + done.stderr)[-2000:],
    }


def stored_row(target: str, mode: str, seed: int, workload: str) -> dict[str, object]:
    """The row of an earlier run, from the results it left in RUNS."""
    results = RUNS / f"{target}-{mode}-{workload}-{seed}" / "results.json"
    loaded = json.loads(results.read_text()) if results.exists() else None
    status = "not run" if loaded is None else 0
    return {"target": target, "mode": mode, "seed": seed, "status": status, "results": loaded}


def table(rows: list[dict[str, object]], duration: float, workload: str) -> str:
    head = ["target", "faults", "seed", "txn/sends ok", "fail", "info", "kills", *SHOWN, "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        results = row["results"]
        if not isinstance(results, dict):
            lines.append(f"| {row['target']} | {row['mode']} | {row['seed']} | run failed (status {row['status']}) |")
            continue
        stats, counts = results["stats"], results["counts"]
        main = "txn" if workload == "txn" else "send"
        kills = sum(1 for w in results["run"]["windows"] if w["kind"] == "kill")
        verdict = "valid" if results["valid"] else "**INVALID**"
        lines.append(
            "| "
            + " | ".join(
                [
                    str(row["target"]),
                    str(row["mode"]),
                    str(row["seed"]),
                    str(stats.get(f"{main}-ok", 0)),
                    str(stats.get(f"{main}-fail", 0)),
                    str(stats.get(f"{main}-info", 0)),
                    str(kills),
                ]
                + [str(counts[name]) for name in SHOWN]
                + [verdict]
            )
            + " |"
        )
    seeds = ",".join(str(seed) for seed in sorted({int(str(row["seed"])) for row in rows}))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return (
        f"# tidelog verify results\n\n{workload} workload, {duration:g} s per run, 4 workers, 2 topics x 4 partitions, "
        f"one single-node broker per run on this 2-core machine (commit {commit}). "
        "Rerun: `.venv/bin/python bench/verify_matrix.py --duration "
        f"{duration:g} --workload {workload} --seeds {seeds}`. G0 is allowed (Kafka gives no write isolation); "
        "every other column must be 0. Faults: `proxy` = drops, delays, resets and replays through "
        "tidelog.verify.proxy in windows of 5-15 s; `proxy-guarded` = the same with `--flush-before-abort "
        "--no-replays`; `kill` = the broker SIGKILLed and restarted every 10-30 s.\n\n" + "\n".join(lines) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--workload", default="txn")
    parser.add_argument("--seeds", default="1", help="comma-separated")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument(
        "--table-only", action="store_true", help=f"no runs: the table from the results kept in {RUNS.name}/"
    )
    args = parser.parse_args()
    os.chdir(ROOT)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for target in args.targets.split(","):
            for mode in args.modes.split(","):
                if args.table_only:
                    rows.append(stored_row(target, mode, seed, args.workload))
                    continue
                print(f"{target} {mode} seed {seed} ...", flush=True)
                row = run_one(target, mode, seed, args.duration, args.workload)
                rows.append(row)
                print(f"  status {row['status']} in {row['elapsed']:.0f} s", flush=True)
                Path(args.out).write_text(table(rows, args.duration, args.workload))
    if args.table_only:  # by target, faults, seed
        rows.sort(key=lambda r: (TARGETS.index(str(r["target"])), MODES.index(str(r["mode"])), int(str(r["seed"]))))
        Path(args.out).write_text(table(rows, args.duration, args.workload))
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
