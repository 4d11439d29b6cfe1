"""Crash-state exploration of the storage engine (see tests/crash/explorer.py and the section
"Crash-state exploration" of docs/operations.md).

The default run explores a sample (about 2,000 crash states); `-m faults` runs the full set
(at least 10,000), as does bench/crash_states.py, which also writes the summary table.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crash import explorer
from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import decode_batch, iter_batches
from tidelog.storage.log_manager import LogManager
from tidelog.storage.unified_log import TopicPartition

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="the interposer is built with gcc")

# Outcomes that must never happen on a state the ordering rules allow (synced, all, prefix).
NEVER = (
    "acked_loss",
    "corrupt_read",
    "open_error",
    "broken_after",
    "lso_past_open",
    "lso_stuck",
    "abort_exposed",
    "txnindex_phantom",
    "leftover",
    "segments_mixed",
)


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    path = explorer.scratch_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def sample(work: Path) -> dict[str, explorer.Summary]:
    summaries = explorer.run(work / "sample", explorer.CI_SEEDS, explorer.CI_SAMPLES)
    print("\n".join(explorer.table_rows(summaries)))
    return {s.scenario: s for s in summaries}


def failures(summary: explorer.Summary, outcome: str, legal_only: bool = True) -> list[str]:
    return [f for f in summary.failures if f": {outcome}: " in f and (not legal_only or not f.startswith("reorder"))]


@pytest.mark.parametrize("scenario", explorer.SCENARIOS)
def test_no_acknowledged_loss_and_no_corrupt_read_in_any_crash_state(
    sample: dict[str, explorer.Summary], scenario: str
) -> None:
    summary = sample[scenario]
    assert summary.states >= 400, summary
    for mode in explorer.MODES:  # every model produced states, and most of them open fine
        assert summary.by_mode[mode] > 0
    legal, reorder = explorer.split_outcomes(summary)
    for outcome in NEVER:
        assert legal[outcome] == 0, failures(summary, outcome)
    assert reorder["acked_loss"] == reorder["corrupt_read"] == 0, failures(summary, "acked_loss", False)
    assert reorder["lso_past_open"] == reorder["abort_exposed"] == 0, failures(summary, "lso_past_open", False)
    assert legal["ok"] + reorder["ok"] > summary.states // 3  # the checks ran on most states
    if scenario == "compact":  # a crash during cleaning leaves a state the engine opens as it was
        assert legal["refused"] == legal["resurrected"] == 0, failures(summary, "refused") + failures(
            summary, "resurrected"
        )
        assert summary.pass_ops >= 300, summary  # many crash points fall inside cleaning passes


def test_compact_workload_compacts(sample: dict[str, explorer.Summary], work: Path) -> None:
    """The compact scenario's log, as the workload closed it, holds a small part of what was
    written: its passes did remove superseded records, tombstones and aborted data."""
    manager = LogManager.open(work / "sample" / "compact-data", TopicConfig())
    try:
        log = manager.partitions[TopicPartition("k", 0)].log
        end, served, offset = log.log_end_offset, 0, 0
        while offset < end and (piece := log.read(offset, 1 << 16, end)) is not None:
            batches = iter_batches(piece.read())
            served += sum(len(decode_batch(raw)[1]) for header, raw in batches if not header.is_control)
            offset = piece.last_offset + 1
    finally:
        manager.close()
    assert end > 120 and 0 < served * 3 < end, (served, end)


def test_sabotage_skipped_fsync_is_seen_as_acknowledged_loss(work: Path) -> None:
    """The interposer turns fsync/fdatasync into no-ops while the workload still acknowledges:
    the explorer must find acknowledged records missing in crash states."""
    (summary,) = explorer.run(
        work / "sabotage", (1,), {"synced": 1, "all": 1}, point_stride=3, drop_sync=True, scenarios=("roll",)
    )
    legal, _ = explorer.split_outcomes(summary)
    assert legal["acked_loss"] > 10, summary.outcomes


def test_sabotage_dropped_txnindex_append_is_seen_as_exposed_aborts(work: Path) -> None:
    """The workload's logs drop the `.txnindex` append of UnifiedLog.append_marker: where the
    producer-state replay does not re-append it (a snapshot after the ABORT marker), a
    read_committed fetch is not told of the aborted transaction."""
    (summary,) = explorer.run(
        work / "sabotage-txn", (1,), {"synced": 1, "all": 1}, point_stride=3, scenarios=("txn",), sabotage="no_txnindex"
    )
    legal, _ = explorer.split_outcomes(summary)
    assert legal["abort_exposed"] > 10, summary.outcomes


def test_sabotage_marker_acknowledged_before_its_flush_is_seen_as_acknowledged_loss(work: Path) -> None:
    (summary,) = explorer.run(
        work / "sabotage-marker",
        (1,),
        {"synced": 1, "all": 1},
        point_stride=3,
        scenarios=("txn",),
        sabotage="marker_unflushed",
    )
    legal, _ = explorer.split_outcomes(summary)
    assert legal["acked_loss"] > 10, summary.outcomes


def test_sabotage_swap_deleting_old_segments_before_its_commit_is_seen_as_acknowledged_loss(work: Path) -> None:
    """The trace of the compact scenario with each swap's deletions of the old segments moved
    before its manifest is made (explorer.delete_old_segments_before_commit): crash states in
    between hold neither the old segments nor a committed swap."""
    (summary,) = explorer.run(
        work / "sabotage-swap",
        (1,),
        {"synced": 1, "all": 1},
        point_stride=3,
        scenarios=("compact",),
        sabotage="swap_deletes_first",
    )
    legal, _ = explorer.split_outcomes(summary)
    assert legal["acked_loss"] > 5, summary.outcomes


def test_sabotage_unsynced_cleaned_segments_are_seen(work: Path) -> None:
    """The interposer drops the fsyncs of the `.cleaned` files (the swap is committed over
    cleaned segments that are not on disk): crash states lose acknowledged records, or hold
    flushed segments that end short, which the engine refuses to open."""
    (summary,) = explorer.run(
        work / "sabotage-cleaned",
        (1,),
        {"synced": 1, "all": 1},
        point_stride=3,
        scenarios=("compact",),
        sabotage="cleaned_unsynced",
    )
    legal, _ = explorer.split_outcomes(summary)
    assert legal["acked_loss"] + legal["refused"] > 20, summary.outcomes


def test_no_retry_is_answered_as_a_duplicate_of_lost_records(sample: dict[str, explorer.Summary]) -> None:
    for summary in sample.values():
        legal, _ = explorer.split_outcomes(summary)
        assert legal["phantom_duplicate"] == 0, failures(summary, "phantom_duplicate")


def test_a_deleted_topic_made_again_starts_empty(sample: dict[str, explorer.Summary]) -> None:
    legal, _ = explorer.split_outcomes(sample["topics"])
    assert legal["resurrected"] == 0, failures(sample["topics"], "resurrected")


@pytest.mark.faults
def test_full_run_explores_at_least_ten_thousand_crash_states(work: Path) -> None:
    summaries = explorer.run(work / "full", explorer.FULL_SEEDS, explorer.FULL_SAMPLES)
    print("\n".join(explorer.table_rows(summaries)))
    assert sum(s.states for s in summaries) >= 10_000
    for summary in summaries:
        legal, reorder = explorer.split_outcomes(summary)
        for outcome in NEVER:
            assert legal[outcome] == 0, failures(summary, outcome)
        assert reorder["acked_loss"] == reorder["corrupt_read"] == 0
        assert reorder["lso_past_open"] == reorder["abort_exposed"] == 0
