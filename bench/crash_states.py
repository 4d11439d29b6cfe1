"""The full crash-state exploration (issues 14 and 15): every scenario of tests/crash (the log
cleaner's `compact` included), five workload seeds, more samples per crash point, and the
sabotages that show the checker finds what they break; prints the summary table and writes
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
        compact_sabotage = {
            kind: explorer.run(
                work / f"sabotage-{kind}",
                (1,),
                {"synced": 1, "all": 1, "prefix": 2},
                scenarios=("compact",),
                sabotage=kind,
            )
            for kind in ("swap_deletes_first", "cleaned_unsynced")
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
        "Sabotage of the compact scenario: each swap's deletions of the old segments moved before its "
        "manifest in the recorded trace (`swap_deletes_first`), and the fsyncs of the `.cleaned` files "
        "dropped by the interposer (`cleaned_unsynced`):",
        "",
        *explorer.table_rows(
            [dataclasses.replace(s, scenario=f"compact, {k}") for k, runs in compact_sabotage.items() for s in runs]
        ),
        "",
        f"Ops inside cleaning passes in the compact recordings: {sum(s.pass_ops for s in summaries)}.",
        "",
        "First failures of each kind:",
        "",
    ]
    sabotaged = [*txn_sabotage.values(), *compact_sabotage.values()]
    for summary in [*summaries, *(s for runs in sabotaged for s in runs)]:
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
