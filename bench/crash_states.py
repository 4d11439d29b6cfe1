"""The full crash-state exploration (issue 14): every scenario of tests/crash, five workload
seeds, more samples per crash point; prints the summary table and writes
bench/results/crash_states.md.

    PYTHONPATH=python python bench/crash_states.py
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.crash import explorer  # noqa: E402

RESULTS = REPO / "bench" / "results" / "crash_states.md"


def main() -> None:
    work = explorer.scratch_dir()
    started = time.monotonic()
    try:
        summaries = explorer.run(work, explorer.FULL_SEEDS, explorer.FULL_SAMPLES)
        sabotage = explorer.run(
            work / "sabotage", (1,), {"synced": 1, "all": 1, "prefix": 2}, drop_sync=True, scenarios=("roll",)
        )
        txn_sabotage = {
            kind: explorer.run(
                work / f"sabotage-{kind}", (1,), {"synced": 1, "all": 1, "prefix": 2}, scenarios=("txn",), sabotage=kind
            )
            for kind in ("marker_unflushed", "no_txnindex")
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    total = sum(s.states for s in summaries)
    lines = [
        "# Crash-state exploration",
        "",
        f"`PYTHONPATH=python python bench/crash_states.py`: {total} distinct crash states, "
        f"workload seeds {list(explorer.FULL_SEEDS)}, samples per crash point {explorer.FULL_SAMPLES}, "
        f'{elapsed:.0f} s. Method and columns: docs/operations.md, "Crash-state exploration".',
        "",
        *explorer.table_rows(summaries),
        "",
        "Sabotage (fsync and fdatasync made no-ops by the interposer, acknowledgements unchanged):",
        "",
        *explorer.table_rows(sabotage),
        "",
        "Sabotage of the txn scenario: markers acknowledged without their flush (`marker_unflushed`), "
        "and the `.txnindex` append of UnifiedLog.append_marker dropped (`no_txnindex`):",
        "",
        *explorer.table_rows(
            [dataclasses.replace(s, scenario=f"txn, {kind}") for kind, runs in txn_sabotage.items() for s in runs]
        ),
        "",
        "First failures of each kind:",
        "",
    ]
    for summary in [*summaries, *(s for runs in txn_sabotage.values() for s in runs)]:
        kinds: set[tuple[str, str]] = set()
        for failure in summary.failures:
            kind = (failure.split()[0], failure.split(": ")[1])
            if kind not in kinds:
                kinds.add(kind)
                lines.append(f"- {summary.scenario}: {failure[:400]}")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text.replace(str(work), "<tmp>"))


if __name__ == "__main__":
    main()
