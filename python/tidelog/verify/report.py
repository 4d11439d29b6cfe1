"""What a verify run shows and keeps: the summary table and examples (rich), the history and
results as JSON, and plots of throughput and latency over time with the fault windows shaded
(matplotlib). All three libraries are imported only here, when a run reports."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tidelog.verify.checker import ANOMALIES, Result
from tidelog.verify.history import FINAL, Op, write_jsonl

if TYPE_CHECKING:
    from tidelog.verify.runner import RunInfo

EXAMPLES_SHOWN = 3
OPS_SHOWN_PER_EXAMPLE = 4
# Examples kept per anomaly in results.json (the history holds the rest).
EXAMPLES_KEPT = 100
THROUGHPUT_BIN_S = 1.0
PLOT_DPI = 110
WINDOW_COLOURS = {"proxy": "tab:orange", "kill": "tab:red"}


def write(directory: Path, ops: list[Op], result: Result, info: RunInfo) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_jsonl(directory / "history.jsonl", ops)
    data = result.to_json()
    data["anomalies"] = {name: found[:EXAMPLES_KEPT] for name, found in data["anomalies"].items()}
    data["run"] = info.to_json()
    (directory / "results.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    plot(directory, ops, info)


def summary_table(result: Result) -> Any:
    from rich.table import Table

    table = Table(title=f"tidelog verify: {result.workload} workload")
    table.add_column("anomaly")
    table.add_column("count", justify="right")
    table.add_column("verdict")
    for name in ANOMALIES:
        count = result.counts[name]
        if name in result.allowed:
            verdict = "[yellow]allowed[/]" if count else "allowed"
        else:
            verdict = "[bold red]FORBIDDEN[/]" if count else "[green]none[/]"
        table.add_row(name, str(count), verdict)
    return table


def show(result: Result, info: RunInfo, ops: list[Op]) -> None:
    from rich.console import Console

    console = Console(stderr=False)
    by_index = {op.index: op for op in ops}
    console.print(summary_table(result))
    stats = ", ".join(f"{k} {v}" for k, v in result.stats.items())
    console.print(f"[dim]{stats}[/]")
    kills = sum(1 for w in info.windows if w.kind == "kill")
    faults = sum(1 for w in info.windows if w.kind == "proxy")
    if faults or kills or info.proxy_counters:
        done = {k: v for k, v in info.proxy_counters.items() if not k.startswith("request:")}
        console.print(f"[dim]fault windows {faults}, broker kills {kills}; proxy: {done}[/]")
    for name in ANOMALIES:
        found = result.anomalies[name]
        if not found or name in result.allowed:
            continue
        console.print(f"\n[bold]{name}[/] ({len(found)}), first {min(len(found), EXAMPLES_SHOWN)}:")
        for example in found[:EXAMPLES_SHOWN]:
            fields = {k: v for k, v in example.items() if k != "ops"}
            console.print(f"  {fields}", markup=False)
            for index in example.get("ops", [])[:OPS_SHOWN_PER_EXAMPLE]:
                op = by_index.get(index)
                if op is not None and op.f != FINAL:
                    console.print(f"    {op.describe()}", markup=False)
                elif op is not None:
                    console.print(f"    #{op.index} final read ({op.isolation})", markup=False)
    verdict = "[bold green]valid[/]" if result.valid else f"[bold red]INVALID[/] {result.forbidden}"
    console.print(f"\nverdict: {verdict}; report in {info.report_dir}")


def plot(directory: Path, ops: list[Op], info: RunInfo) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worked = [op for op in ops if op.f != FINAL and op.f != "assign"]
    if not worked:
        return
    end = max(op.complete for op in worked)
    bins = int(end / THROUGHPUT_BIN_S) + 1
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for type_, colour in (("ok", "tab:green"), ("fail", "tab:blue"), ("info", "tab:red")):
        counts = Counter(int(op.complete / THROUGHPUT_BIN_S) for op in worked if op.type == type_)
        series = [counts.get(i, 0) / THROUGHPUT_BIN_S for i in range(bins)]
        top.plot([i * THROUGHPUT_BIN_S for i in range(bins)], series, label=type_, color=colour, linewidth=1)
        chosen = [op for op in worked if op.type == type_]
        bottom.scatter(
            [op.invoke for op in chosen],
            [max(op.complete - op.invoke, 1e-4) * 1000 for op in chosen],
            s=2,
            color=colour,
            label=type_,
            alpha=0.5,
        )
    top.set_ylabel("operations / s")
    top.legend(loc="upper right")
    bottom.set_yscale("log")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("time (s)")
    for axis in (top, bottom):
        for window in info.windows:
            axis.axvspan(window.start, window.end, color=WINDOW_COLOURS.get(window.kind, "grey"), alpha=0.15)
    fig.suptitle(f"{info.config.get('workload')} workload, faults {info.config.get('faults')} (shaded: fault windows)")
    fig.tight_layout()
    fig.savefig(directory / "throughput-latency.png", dpi=PLOT_DPI)
    plt.close(fig)
