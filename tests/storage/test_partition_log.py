"""PartitionLog through the Python API: append, read, bad input, retention, timestamps."""

from __future__ import annotations

import resource
import struct
from pathlib import Path

import pytest

from tests.conftest import make_batch, now_ms, open_log, read_everything
from tidelog.protocol.record_batch import decode_batch, iter_batches
from tidelog.storage import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    StorageError,
    UnsupportedMagicError,
    wait_for_deletions,
)


def test_appended_records_read_back_byte_exact_with_offsets(log_dir: Path) -> None:
    log = open_log(log_dir)
    batches = [make_batch(count=5, tag=i) for i in range(20)]
    for i, batch in enumerate(batches):
        info = log.append(bytearray(batch) if i % 2 else batch, now_ms())
        assert (info.first_offset, info.last_offset) == (5 * i, 5 * i + 4)
    stored = iter_batches(read_everything(log))
    assert len(stored) == 20
    for i, (header, view) in enumerate(stored):
        assert header.base_offset == 5 * i
        assert bytes(view[8:]) == batches[i][8:12] + struct.pack(">i", -1) + batches[i][16:]
        _, records = decode_batch(view)
        assert [r[0] for r in records] == list(range(5 * i, 5 * i + 5))
        assert records[0][2] == f"key-{i}-0".encode() and records[0][4] == [("tag", str(i).encode())]


def test_read_respects_max_bytes_upper_bound_and_log_range(log_dir: Path) -> None:
    log = open_log(log_dir)
    size = len(make_batch())
    for i in range(10):
        log.append(make_batch(tag=i), now_ms())
    piece = log.read(7, 2 * size, log.log_end_offset)
    assert piece is not None and piece.first_offset == 6 and piece.size == 2 * size
    assert log.read(0, 1, log.log_end_offset).size == size, "at least one whole batch"
    assert log.read(0, 1, log.log_end_offset, min_one_batch=False) is None
    assert log.read(0, 1 << 20, 9).last_offset == 8, "the upper bound stops before a batch"
    assert log.read(30, 100, 30) is None
    with pytest.raises(OffsetOutOfRangeError):
        log.read(31, 100, 31)


def corrupt(batch: bytes, at: int, value: bytes) -> bytes:
    return batch[:at] + value + batch[at + len(value) :]


BAD_INPUTS = {
    "truncated": (lambda b: b[:-1], CorruptRecordError),
    "truncated header": (lambda b: b[:30], CorruptRecordError),
    "wrong crc": (lambda b: corrupt(b, 70, bytes([b[70] ^ 0xFF])), CorruptRecordError),
    "wrong magic": (lambda b: corrupt(b, 16, b"\x01"), UnsupportedMagicError),
    "negative length": (lambda b: corrupt(b, 8, struct.pack(">i", -100)), CorruptRecordError),
    "huge length": (lambda b: corrupt(b, 8, struct.pack(">i", 2**31 - 1)), CorruptRecordError),
    "count mismatch": (lambda b: corrupt(b, 23, struct.pack(">i", 7)), CorruptRecordError),
    "empty": (lambda b: b"", InvalidRecordError),
    "good then garbage": (lambda b: b + b"\x00" * 70, CorruptRecordError),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_and_leaves_the_log_unchanged(log_dir: Path, case: str) -> None:
    log = open_log(log_dir)
    log.append(make_batch(), now_ms())
    before = (log.log_end_offset, log.size_bytes, read_everything(log))
    mangle, error = BAD_INPUTS[case]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(error):
        log.append(mangle(make_batch()), now_ms())
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown_kib < 64 * 1024, "a claimed length must never be allocated"
    assert (log.log_end_offset, log.size_bytes, read_everything(log)) == before
    assert log.append(make_batch(), now_ms()).first_offset == before[0], "the log still takes good appends"


def test_a_batch_above_max_message_bytes_is_refused(log_dir: Path) -> None:
    log = open_log(log_dir, **{"max.message.bytes": 1000})
    with pytest.raises(RecordTooLargeError):
        log.append(make_batch(count=20, value_bytes=100), now_ms())
    assert log.log_end_offset == 0


def test_timestamps_far_in_the_future_are_refused(log_dir: Path) -> None:
    log = open_log(log_dir)
    with pytest.raises(InvalidTimestampError):
        log.append(make_batch(timestamp_ms=now_ms() + 2 * 3600 * 1000), now_ms())


def test_log_append_time_is_stamped(log_dir: Path) -> None:
    log = open_log(log_dir, **{"message.timestamp.type": "LogAppendTime"})
    info = log.append(make_batch(timestamp_ms=1000), 5_000_000)
    assert info.log_append_time_ms == 5_000_000
    _, records = decode_batch(read_everything(log))  # the CRC still checks
    assert {r[1] for r in records} == {5_000_000}


def test_segments_roll_and_retention_by_size_moves_log_start(log_dir: Path) -> None:
    log = open_log(log_dir, **{"internal.segment.bytes": 16 * 1024, "retention.bytes": 32 * 1024})
    for i in range(100):
        log.append(make_batch(count=4, value_bytes=250, tag=i), now_ms())
    assert log.segment_count > 5
    report = log.delete_old_segments(now_ms(), log.log_end_offset)
    assert report.segments_deleted > 0 and log.log_start_offset == report.log_start_offset > 0
    assert 32 * 1024 <= log.size_bytes < 32 * 1024 + 16 * 1024
    first = iter_batches(read_everything(log))[0][0]
    assert first.base_offset == log.log_start_offset


def test_a_segment_retention_deletes_leaves_the_log_at_once_and_its_readers_keep_their_bytes(log_dir: Path) -> None:
    log = open_log(log_dir, **{"internal.segment.bytes": 64 * 1024, "retention.bytes": 0})
    for i in range(40):
        log.append(make_batch(count=4, value_bytes=2000, tag=i), now_ms())
    first = log.read(0, 1 << 30, log.log_end_offset)  # a fetch response still being sent
    assert first is not None
    expected = first.read()
    report = log.delete_old_segments(now_ms(), log.log_end_offset)
    assert report.segments_deleted > 0
    assert not (log_dir / "00000000000000000000.log").exists()
    assert (log_dir / "00000000000000000000.log.deleted").exists(), "the reader's file was not kept"
    # The deleter cuts a file only once no reader holds it: this one still has every byte.
    assert not wait_for_deletions(0.5)
    assert first.read() == expected
    del first
    assert wait_for_deletions(10)
    assert not list(log_dir.glob("*.deleted")), "the deleted segments' files stayed"
    assert sorted(p.suffix for p in log_dir.glob("0*")) == [".index", ".log", ".timeindex"]


def test_retention_by_time_never_passes_the_upper_bound(log_dir: Path) -> None:
    log = open_log(log_dir, **{"retention.ms": 1000})
    old = now_ms() - 60_000
    for i in range(3):
        log.append(make_batch(timestamp_ms=old, tag=i), now_ms())
    assert log.delete_old_segments(now_ms(), 3).segments_deleted == 0, "high watermark below the segment"
    assert log.delete_old_segments(now_ms(), log.log_end_offset).segments_deleted == 1
    assert log.log_start_offset == log.log_end_offset == 9


def test_delete_records_survives_restart(log_dir: Path) -> None:
    log = open_log(log_dir)
    for i in range(10):
        log.append(make_batch(tag=i), now_ms())
    assert log.delete_records_before(14, log.log_end_offset) == 14
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records_before(31, log.log_end_offset)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(13, 100, 30)
    log.close()
    reopened = open_log(log_dir)
    assert reopened.log_start_offset == 14


def test_offset_for_timestamp(log_dir: Path) -> None:
    log = open_log(log_dir)
    base = now_ms() - 100_000
    for i in range(100):
        log.append(make_batch(count=10, timestamp_ms=base + 100 * i), now_ms())
    assert log.offset_for_timestamp(base + 505) == (55, base + 505)
    assert log.offset_for_timestamp(base + 511) == (60, base + 600)
    assert log.offset_for_timestamp(base - 1) == (0, base)
    assert log.offset_for_timestamp(base + 100_000) is None
    assert log.max_timestamp_and_offset() == (base + 9909, 999)


def test_closed_log_refuses_appends(log_dir: Path) -> None:
    log = open_log(log_dir)
    log.close()
    with pytest.raises(StorageError):
        log.append(make_batch(), now_ms())
