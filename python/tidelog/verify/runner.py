"""A verify run: topics, worker processes, faults, the heal, the final reads, the check.

`run(VerifyConfig)` returns the checked result; `main(args)` is the `tidelog verify` command
(exit status 0 when no forbidden anomaly was found, 1 when one was, 2 when the run failed).
"""

from __future__ import annotations

import multiprocessing
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tidelog.verify import history, workload
from tidelog.verify.checker import Result, check
from tidelog.verify.proxy import FaultProxy, Rule, Window, default_faults

TOPICS_PER_RUN = 2
PARTITIONS_PER_TOPIC = 4
WORKERS = 4
# Proxy faults come and go in windows of these lengths (seconds), after a calm start, until a
# quiet end (each at most a tenth of a short run).
FAULT_ON_S = (5.0, 15.0)
FAULT_OFF_S = (5.0, 10.0)
CALM_START_S = 3.0
# --kill-broker: the command runs every so often (seconds), never in the last stretch of the run;
# the first time within this share of the run, so that a short run has a kill too.
KILL_INTERVAL_S = (10.0, 30.0)
FIRST_KILL_SHARE = 0.4
KILL_COMMAND_TIMEOUT_S = 120.0
# After a kill, how long the cluster may take to answer Metadata again.
BROKER_BACK_TIMEOUT_S = 120.0
QUIET_END_S = 5.0
SHORT_RUN_SHARE = 0.1
ADMIN_TIMEOUT_S = 30.0
# Workers stop at the deadline; they get this long to flush and exit.
WORKER_EXIT_TIMEOUT_S = workload.FLUSH_TIMEOUT_S + 2 * workload.CALL_TIMEOUT_S
PROGRESS_REFRESH_S = 0.5


@dataclass
class VerifyConfig:
    bootstrap: str
    duration_s: float = 300.0
    workload: str = "txn"
    faults: str = "none"
    kill_broker: str | None = None
    seed: int = 0
    report: Path | None = None
    workers: int = WORKERS
    partitions: int = PARTITIONS_PER_TOPIC
    replication_factor: int = 1
    sabotage: str | None = None
    progress: bool = True
    flush_before_abort: bool = False  # see workload.WorkerSpec
    replays: bool = True  # with --faults proxy: see proxy.default_faults


@dataclass
class RunInfo:
    config: dict[str, Any]
    topics: list[str]
    windows: list[Window] = field(default_factory=list)
    proxy_counters: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    report_dir: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _create_topics(bootstrap: str, topics: list[str], partitions: int, replication_factor: int) -> None:
    from confluent_kafka import admin as kafka_admin

    AdminClient, NewTopic = kafka_admin.AdminClient, kafka_admin.NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, partitions, replication_factor) for t in topics])
    for future in futures.values():
        future.result(ADMIN_TIMEOUT_S)
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while time.monotonic() < deadline:  # visible in metadata with a leader for every partition
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
        ready = [metadata.topics.get(t) for t in topics]
        if all(t is not None and len(t.partitions) == partitions and t.error is None for t in ready):
            return
        time.sleep(0.1)
    raise RuntimeError(f"topics {topics} not ready in {ADMIN_TIMEOUT_S} s")


def _broker_back(bootstrap: str, timeout_s: float) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=2)
            return True
        except Exception:
            time.sleep(0.2)
    return False


class _Nemesis:
    """Turns proxy faults on and off in windows and runs the kill command, on schedule."""

    def __init__(self, config: VerifyConfig, proxy: FaultProxy | None, start: float) -> None:
        self.config = config
        self.proxy = proxy
        self.start = start
        self.random = random.Random(config.seed)
        self.windows: list[Window] = []
        self.fault_from: float | None = None
        self.quiet_end_s = min(QUIET_END_S, config.duration_s * SHORT_RUN_SHARE)
        calm = min(CALM_START_S, config.duration_s * SHORT_RUN_SHARE)
        self.next_fault = calm if proxy is not None and config.faults == "proxy" else None
        self.next_kill = None
        if config.kill_broker:
            self.next_kill = min(self.random.uniform(*KILL_INTERVAL_S), config.duration_s * FIRST_KILL_SHARE)

    def now(self) -> float:
        return time.monotonic() - self.start

    def step(self) -> None:
        now = self.now()
        end = self.config.duration_s - self.quiet_end_s
        if self.next_fault is not None and now >= self.next_fault and self.proxy is not None:
            if self.fault_from is None and now < end:
                self.proxy.enabled, self.fault_from = True, now
                self.next_fault = now + self.random.uniform(*FAULT_ON_S)
            elif self.fault_from is not None:
                self.heal()
                self.next_fault = now + self.random.uniform(*FAULT_OFF_S)
        if self.next_kill is not None and now >= self.next_kill and now < end and self.config.kill_broker:
            begin = now
            outcome = subprocess.run(
                self.config.kill_broker, shell=True, timeout=KILL_COMMAND_TIMEOUT_S, capture_output=True, text=True
            )
            back = _broker_back(self.config.bootstrap, BROKER_BACK_TIMEOUT_S)
            self.windows.append(
                Window(
                    begin,
                    self.now(),
                    "kill",
                    {"status": outcome.returncode, "back": back, "stderr": outcome.stderr[-500:]},
                )
            )
            self.next_kill = self.now() + self.random.uniform(*KILL_INTERVAL_S)

    def heal(self) -> None:
        if self.proxy is not None:
            self.proxy.heal()
        if self.fault_from is not None:
            self.windows.append(Window(self.fault_from, self.now(), "proxy"))
            self.fault_from = None


def run(config: VerifyConfig) -> tuple[Result, RunInfo, list[history.Op]]:
    if config.workload not in workload.WORKLOADS:
        raise ValueError(f"unknown workload {config.workload!r}")
    tag = f"{config.seed}-{int(time.time() * 1000) % 10**10}"
    topics = [f"verify-{tag}-{chr(ord('a') + i)}" for i in range(TOPICS_PER_RUN)]
    report_dir = config.report or Path(tempfile.mkdtemp(prefix="tidelog-verify-"))
    report_dir.mkdir(parents=True, exist_ok=True)
    info = RunInfo(
        {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        topics,
        report_dir=str(report_dir),
    )
    _create_topics(config.bootstrap, topics, config.partitions, config.replication_factor)

    proxy = None
    rules: list[Rule] = []
    if config.faults == "proxy":
        rules.append(default_faults(config.seed, config.replays))
    if config.sabotage:
        from tidelog.verify.sabotage import Sabotage

        rules.append(Sabotage(config.sabotage, config.seed))
    if rules:
        proxy = FaultProxy(config.bootstrap, rules).start()
    client_bootstrap = proxy.bootstrap if proxy is not None else config.bootstrap

    start = time.monotonic()
    context = multiprocessing.get_context("spawn")
    counters = context.Array("q", config.workers * 3, lock=False)
    paths = [report_dir / f"worker-{w}.jsonl" for w in range(config.workers)]
    for path in paths:
        path.write_text("")
    processes = []
    for w in range(config.workers):
        spec = workload.WorkerSpec(
            worker=w + 1,
            bootstrap=client_bootstrap,
            workload=config.workload,
            topics=tuple(topics),
            partitions=config.partitions,
            group=f"verify-{tag}",
            transactional_prefix=f"verify-{tag}",
            seed=config.seed,
            start=start,
            duration_s=config.duration_s,
            history_path=str(paths[w]),
            flush_before_abort=config.flush_before_abort,
        )
        process = context.Process(target=workload.run_worker, args=(spec, _Slice(counters, w)), daemon=True)
        process.start()
        processes.append(process)

    nemesis = _Nemesis(config, proxy, start)
    with _Progress(config, counters, start) as progress:
        while nemesis.now() < config.duration_s:
            nemesis.step()
            progress.update(nemesis)
            time.sleep(PROGRESS_REFRESH_S)
        nemesis.heal()
        progress.phase("waiting for the workers to finish")
        deadline = time.monotonic() + WORKER_EXIT_TIMEOUT_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join()
        if config.kill_broker:
            _broker_back(config.bootstrap, BROKER_BACK_TIMEOUT_S)
        ops: list[history.Op] = []
        for path in paths:
            ops += history.read_jsonl(path)
            path.unlink()  # merged into history.jsonl
        for isolation in (history.READ_COMMITTED, history.READ_UNCOMMITTED):
            progress.phase(f"final read ({isolation})")
            ops.append(workload.final_read(config.bootstrap, topics, config.partitions, isolation, start))
        progress.phase("checking")
        numbered = history.number(ops)
        result = check(numbered, config.workload)
    if proxy is not None:
        info.proxy_counters = dict(sorted(proxy.counters.items()))
        proxy.stop()
    info.windows = nemesis.windows
    info.elapsed_s = time.monotonic() - start
    return result, info, numbered


class _Slice:
    """One worker's three counters (ok, fail, info) in the array shared by all."""

    def __init__(self, array: Any, worker: int) -> None:
        self.array = array
        self.base = worker * 3

    def __setitem__(self, index: int, value: int) -> None:
        self.array[self.base + index] = value

    def __getitem__(self, index: int) -> int:
        return int(self.array[self.base + index])


class _Progress:
    """A rich progress bar over the run's duration, with the operations done so far."""

    def __init__(self, config: VerifyConfig, counters: Any, start: float) -> None:
        self.config = config
        self.counters = counters
        self.start = start
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _Progress:
        if self.config.progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[ops]}"),
                TimeRemainingColumn(),
            )
            self.bar.start()
            self.task = self.bar.add_task("running", total=self.config.duration_s, ops="")
        return self

    def __exit__(self, *_: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, nemesis: _Nemesis) -> None:
        if self.bar is None:
            return
        ok = sum(self.counters[i] for i in range(0, len(self.counters), 3))
        fail = sum(self.counters[i] for i in range(1, len(self.counters), 3))
        info = sum(self.counters[i] for i in range(2, len(self.counters), 3))
        faults = "faults on" if nemesis.fault_from is not None else ""
        kills = sum(1 for w in nemesis.windows if w.kind == "kill")
        text = f"ok {ok} fail {fail} info {info} {faults}" + (f" kills {kills}" if kills else "")
        self.bar.update(self.task, completed=min(nemesis.now(), self.config.duration_s), ops=text)

    def phase(self, description: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=description)


def main(args: Any) -> int:
    from tidelog.verify import report

    config = VerifyConfig(
        bootstrap=args.bootstrap,
        duration_s=args.duration,
        workload=args.workload,
        faults=args.faults,
        kill_broker=args.kill_broker,
        seed=args.seed,
        report=Path(args.report) if args.report else None,
        workers=args.workers,
        replication_factor=args.replication_factor,
        sabotage=args.sabotage,
        progress=not args.no_progress and sys.stderr.isatty(),
        flush_before_abort=args.flush_before_abort,
        replays=not args.no_replays,
    )
    try:
        result, info, ops = run(config)
    except Exception as error:
        print(f"tidelog verify: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    report.write(Path(info.report_dir), ops, result, info)
    report.show(result, info, ops)
    return 0 if result.valid else 1


def command_line(config: VerifyConfig) -> list[str]:
    """The `tidelog verify` command for `config` (for scripts that run it as a process)."""
    command = [
        sys.executable,
        "-m",
        "tidelog",
        "verify",
        "--bootstrap",
        config.bootstrap,
        "--duration",
        str(config.duration_s),
        "--workload",
        config.workload,
        "--faults",
        config.faults,
        "--seed",
        str(config.seed),
        "--workers",
        str(config.workers),
    ]
    if config.kill_broker:
        command += ["--kill-broker", config.kill_broker]
    if config.report:
        command += ["--report", str(config.report)]
    if config.sabotage:
        command += ["--sabotage", config.sabotage]
    if config.flush_before_abort:
        command.append("--flush-before-abort")
    if not config.replays:
        command.append("--no-replays")
    return command
