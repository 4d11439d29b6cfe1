"""The aborted-transaction index (`.txnindex`) through the Python binding: transactional batches
and ABORT markers in the log, their entries in Kafka's 34-byte format, fetch-range collection,
ordering, restarts, crash recovery and deletion."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from tests.conftest import now_ms, open_log
from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import ControlRecordType, build_batch, build_control_batch
from tidelog.storage import (
    InvalidAbortedTxnError,
    PartitionLog,
    RecoveryReport,
    StorageError,
    log_config_for,
)

ENTRY = struct.Struct(">hqqqq")  # version, producerId, firstOffset, lastOffset, lastStableOffset
Txn = tuple[int, int, int, int]


def txn_data(producer_id: int, count: int = 2, sequence: int = 0) -> bytes:
    """A transactional batch of `count` records from `producer_id` (epoch 0)."""
    t = now_ms()
    records = [(t, f"k{producer_id}-{i}".encode(), b"v" * 20, ()) for i in range(count)]
    return build_batch(records, producer_id=producer_id, producer_epoch=0, base_sequence=sequence, transactional=True)


def marker(producer_id: int, kind: ControlRecordType = ControlRecordType.ABORT) -> bytes:
    return build_control_batch(kind, producer_id, 0, 0, now_ms())


def txn_file(directory: Path, base: int) -> Path:
    return directory / f"{base:020d}.txnindex"


def txn_files(directory: Path) -> list[int]:
    return sorted(int(p.stem) for p in directory.glob("*.txnindex"))


def entries_in(path: Path) -> list[Txn]:
    """The file decoded independently of the engine: Kafka's AbortedTxn layout, version 0."""
    entries = []
    for version, producer_id, first_offset, last_offset, last_stable_offset in ENTRY.iter_unpack(path.read_bytes()):
        assert version == 0
        entries.append((producer_id, first_offset, last_offset, last_stable_offset))
    return entries


def reopen(directory: Path) -> tuple[PartitionLog, RecoveryReport]:
    return PartitionLog.open(directory, log_config_for(TopicConfig()))


def abort(log: PartitionLog, producer_id: int, first_offset: int, last_stable_offset: int | None = None) -> Txn:
    """Writes the ABORT marker, then its entry (LSO: the marker + 1 unless another transaction
    is still open), as the partition leader does; returns the entry."""
    info = log.append(marker(producer_id), now_ms())
    lso = info.last_offset + 1 if last_stable_offset is None else last_stable_offset
    entry = (producer_id, first_offset, info.last_offset, lso)
    log.append_aborted_txn(*entry)
    return entry


def interleaved(log: PartitionLog) -> list[Txn]:
    """Three producers' transactions across three segments; producers 1 and 3 abort, 2 commits.

    offsets: 0-1 p1 | 2-3 p2 | 4 ABORT p1 (p2 open: LSO 2) | roll | 5-6 p3 | 7 COMMIT p2 |
             8-9 p1 | roll | 10 ABORT p3 (p1 open: LSO 8) | 11 ABORT p1 (none open: LSO 12)
    """
    log.append(txn_data(1), now_ms())
    log.append(txn_data(2), now_ms())
    first = abort(log, 1, 0, last_stable_offset=2)
    log.roll()
    log.append(txn_data(3), now_ms())
    log.append(marker(2, ControlRecordType.COMMIT), now_ms())
    log.append(txn_data(1, sequence=2), now_ms())
    log.roll()
    second = abort(log, 3, 5, last_stable_offset=8)
    third = abort(log, 1, 8)
    return [first, second, third]


def test_a_log_without_aborts_has_no_txnindex(log_dir: Path) -> None:
    log = open_log(log_dir)
    log.append(txn_data(1), now_ms())
    log.append(marker(1, ControlRecordType.COMMIT), now_ms())
    log.roll()
    log.close()
    assert txn_files(log_dir) == []
    assert reopen(log_dir)[0].last_aborted_txn_offset == -1


def test_entries_are_kafkas_bytes_in_the_segment_of_their_marker(log_dir: Path) -> None:
    log = open_log(log_dir)
    assert log.last_aborted_txn_offset == -1
    first, second, third = interleaved(log)
    assert (first, second, third) == ((1, 0, 4, 2), (3, 5, 10, 8), (1, 8, 11, 12))
    assert txn_files(log_dir) == [0, 10], "segment 5 saw only a commit"
    assert entries_in(txn_file(log_dir, 0)) == [first]
    assert entries_in(txn_file(log_dir, 10)) == [second, third]
    assert log.last_aborted_txn_offset == 11


def test_collect_follows_kafkas_fetch_range_rule(log_dir: Path) -> None:
    log = open_log(log_dir)
    first, second, third = interleaved(log)
    assert log.collect_aborted_txns(0, 12) == [first, second, third]
    assert log.collect_aborted_txns(5, 12) == [second, third], "p1's first abort ends before offset 5"
    assert log.collect_aborted_txns(5, 8) == [second], "p1's second starts at the bound"
    assert log.collect_aborted_txns(0, 2) == [first], "its LSO 2 reaches the bound: the search stops"
    assert log.collect_aborted_txns(0, 4) == [first], "p3's starts at 5; its LSO 8 stops the search"
    assert log.collect_aborted_txns(12, 13) == []


def test_out_of_order_and_impossible_entries_are_refused(log_dir: Path) -> None:
    log = open_log(log_dir)
    interleaved(log)
    before = txn_file(log_dir, 0).read_bytes()
    with pytest.raises(InvalidAbortedTxnError, match="must increase sequentially"):
        log.append_aborted_txn(2, 2, 7, 5)  # segment 5, but not after offset 11
    with pytest.raises(InvalidAbortedTxnError, match="must increase sequentially"):
        log.append_aborted_txn(1, 8, 11, 12)  # the same marker twice
    with pytest.raises(InvalidAbortedTxnError, match="end offset 12"):
        log.append_aborted_txn(4, 12, 12, 13)  # its marker is not in the log
    assert issubclass(InvalidAbortedTxnError, StorageError)
    assert txn_file(log_dir, 0).read_bytes() == before
    assert txn_files(log_dir) == [0, 10], "no file for the refused entry's segment"


def test_entries_survive_a_restart_and_a_crash_after_a_flush(log_dir: Path) -> None:
    log = open_log(log_dir)
    entries = interleaved(log)
    log.close()
    log, report = reopen(log_dir)
    assert report.clean_shutdown
    assert log.collect_aborted_txns(0, 12) == entries
    entries.append(abort(log, 1, 12))
    assert log.flush() == 13
    del log  # crash after the flush
    log = open_log(log_dir)
    assert log.collect_aborted_txns(0, 13) == entries
    assert log.last_aborted_txn_offset == 12


def test_recovery_drops_entries_whose_marker_was_torn_off(log_dir: Path) -> None:
    log = open_log(log_dir)
    first, second, third = interleaved(log)
    del log  # crash before any flush
    active = log_dir / f"{10:020d}.log"
    marker_bytes = len(marker(3))
    os.truncate(active, marker_bytes + 10)  # the second marker (offset 11) is torn
    log, report = reopen(log_dir)
    assert (log.log_end_offset, report.aborted_txns_truncated) == (11, 1)
    assert log.last_aborted_txn_offset == 10
    assert entries_in(txn_file(log_dir, 10)) == [second]
    assert log.collect_aborted_txns(0, 11) == [first, second]
    # Producer state replayed after the crash re-appends the abort once its marker is back.
    again = abort(log, 1, 8)
    assert again == third
    assert log.collect_aborted_txns(0, 12) == [first, second, third]


def test_truncating_entries_from_an_offset(log_dir: Path) -> None:
    log = open_log(log_dir)
    first, _, _ = interleaved(log)
    assert log.truncate_aborted_txns_from(12) == 0
    assert log.truncate_aborted_txns_from(5) == 2
    assert log.last_aborted_txn_offset == 4
    assert entries_in(txn_file(log_dir, 10)) == []
    assert log.collect_aborted_txns(0, 12) == [first]


def test_deleted_segments_take_their_txnindex(log_dir: Path) -> None:
    log = open_log(log_dir)
    _, second, third = interleaved(log)
    assert log.delete_records_before(10, log.log_end_offset) == 10
    assert txn_files(log_dir) == [10]
    assert log.collect_aborted_txns(10, 12) == [second, third]
    log.close()
    log = open_log(log_dir)
    assert log.collect_aborted_txns(10, 12) == [second, third]
