"""Crash recovery: torn tails at random cuts, scrambled indexes, flipped bits, clean restarts."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from tests.conftest import make_batch, now_ms, open_log, read_everything
from tidelog.config import TopicConfig
from tidelog.storage import CorruptLogError, PartitionLog, log_config_for

CUTS = 2000
SEGMENT = "00000000000000000000"


def write_unflushed_log(directory: Path, batches: list[bytes]) -> None:
    """Appends without a clean close: the next open sees an unclean stop."""
    log = open_log(directory)
    for batch in batches:
        log.append(batch, now_ms())
    del log


def test_recovery_serves_exactly_the_whole_batches_before_a_random_cut(tmp_path: Path) -> None:
    rng = random.Random(20261127)
    batches = [make_batch(count=rng.randint(1, 5), value_bytes=rng.randint(10, 400), tag=i) for i in range(40)]
    pristine = tmp_path / "pristine"
    write_unflushed_log(pristine, batches)
    log_bytes = (pristine / f"{SEGMENT}.log").read_bytes()
    ends = []  # byte position after each batch, with the next offset it leaves
    position, next_offset = 0, 0
    for batch in batches:
        position += len(batch)
        next_offset += int.from_bytes(batch[57:61], "big")
        ends.append((position, next_offset))
    work = tmp_path / "work"
    for _ in range(CUTS):
        cut = rng.randrange(len(log_bytes) + 1)
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work)
        os.truncate(work / f"{SEGMENT}.log", cut)
        scramble_indexes(work, rng)
        whole = [(p, o) for p, o in ends if p <= cut]
        kept_bytes, kept_next = whole[-1] if whole else (0, 0)
        log, report = PartitionLog.open(work, log_config_for(TopicConfig()))
        # Zeros past the last whole batch are a pre-zeroed tail to recovery, cut without
        # counting (a torn write of zero bytes leaves the same file).
        torn = log_bytes[kept_bytes:cut]
        assert report.bytes_truncated == (0 if not torn.strip(b"\0") else cut - kept_bytes)
        assert log.log_end_offset == kept_next
        assert read_everything(log) == log_bytes[:kept_bytes] if kept_bytes else log.read(0, 1, 1) is None
        assert log.append(batches[0], now_ms()).first_offset == kept_next
        log.close()


def scramble_indexes(directory: Path, rng: random.Random) -> None:
    """Deletes, truncates or fills the indexes with noise, at random."""
    for suffix in ("index", "timeindex"):
        path = directory / f"{SEGMENT}.{suffix}"
        choice = rng.randrange(4)
        if choice == 0 and path.exists():
            path.unlink()
        elif choice == 1:
            path.write_bytes(os.urandom(rng.randrange(64)))
        elif choice == 2 and path.exists():
            os.truncate(path, rng.randrange(path.stat().st_size + 1))


def test_a_flipped_bit_inside_a_batch_is_detected_and_never_served(tmp_path: Path) -> None:
    rng = random.Random(7)
    batches = [make_batch(count=3, value_bytes=200, tag=i) for i in range(30)]
    pristine = tmp_path / "pristine"
    write_unflushed_log(pristine, batches)
    size = (pristine / f"{SEGMENT}.log").stat().st_size
    last_batch_start = size - len(batches[-1])
    work = tmp_path / "work"
    for _ in range(200):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work)
        at = rng.randrange(last_batch_start)  # any batch that has a whole batch after it
        with open(work / f"{SEGMENT}.log", "r+b") as segment:
            segment.seek(at)
            byte = segment.read(1)[0]
            segment.seek(at)
            segment.write(bytes([byte ^ (1 << rng.randrange(8))]))
        with pytest.raises(CorruptLogError):
            PartitionLog.open(work, log_config_for(TopicConfig()))


def test_flushed_and_checkpointed_data_is_never_truncated(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = open_log(directory)
    for i in range(10):
        log.append(make_batch(tag=i), now_ms())
    log.flush()
    log.checkpoint()
    del log
    with open(directory / f"{SEGMENT}.log", "r+b") as segment:  # damage the flushed tail
        segment.seek(-5, os.SEEK_END)
        segment.write(b"\xff" * 5)
    with pytest.raises(CorruptLogError):
        open_log(directory)


def test_clean_shutdown_skips_the_scan(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = open_log(directory, **{"internal.segment.bytes": 4096})
    for i in range(50):
        log.append(make_batch(tag=i), now_ms())
    content = read_everything(log)
    log.close()
    log, report = PartitionLog.open(directory, log_config_for(TopicConfig(internal_segment_bytes=4096)))
    assert report.clean_shutdown and report.segments_scanned == 0
    assert read_everything(log) == content
    del log  # crash: the clean mark was cleared at open
    log, report = PartitionLog.open(directory, log_config_for(TopicConfig(internal_segment_bytes=4096)))
    assert not report.clean_shutdown and report.segments_scanned >= 1
    assert read_everything(log) == content


def unflushed_segments(directory: Path) -> list[Path]:
    log = open_log(directory, **{"internal.segment.bytes": 2048})
    for i in range(20):
        log.append(make_batch(tag=i), now_ms())
    del log  # a crash: nothing flushed, so nothing was acknowledged
    segments = sorted(directory.glob("*.log"))
    assert len(segments) > 2
    return segments


def test_a_torn_older_segment_sets_the_later_ones_aside(tmp_path: Path) -> None:
    """Each file's writes reach the disk on their own: an older segment may lose its tail while
    a later one kept batches. Nothing after the tear was acknowledged (a flush syncs every
    segment first), so the log ends at the tear and the later segments are moved aside, not
    served and not deleted (the crash-state exploration found this state refused before)."""
    directory = tmp_path / "t-0"
    first, *later = unflushed_segments(directory)
    kept = first.read_bytes()
    os.truncate(first, first.stat().st_size - 3)
    log, report = PartitionLog.open(directory, log_config_for(TopicConfig(internal_segment_bytes=2048)))
    assert report.segments_set_aside == len(later)
    assert sorted(p.name for p in (directory / "set-aside").glob("*.log")) == [p.name for p in later]
    assert read_everything(log) == kept[: len(read_everything(log))] and log.log_end_offset > 0
    assert log.segment_count == 1


def test_a_segment_that_ends_before_the_next_one_begins_lost_its_tail(tmp_path: Path) -> None:
    """A tail lost at a batch boundary leaves a hole before the next segment's base offset: the
    log ends there (the next segments set aside) instead of jumping over offsets it lost."""
    directory = tmp_path / "t-0"
    first, *later = unflushed_segments(directory)
    data = first.read_bytes()
    last_batch = 0
    position = 0
    while position < len(data):  # the start of the segment's last batch
        last_batch = position
        position += int.from_bytes(data[position + 8 : position + 12], "big") + 12
    os.truncate(first, last_batch)
    log, report = PartitionLog.open(directory, log_config_for(TopicConfig(internal_segment_bytes=2048)))
    assert report.segments_set_aside == len(later)
    assert read_everything(log) == data[:last_batch]
    next_offset = log.log_end_offset
    assert log.append(make_batch(tag=99), now_ms()).first_offset == next_offset
    log.close()


def test_a_short_segment_below_the_recovery_point_is_corruption(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = open_log(directory, **{"internal.segment.bytes": 2048})
    for i in range(20):
        log.append(make_batch(tag=i), now_ms())
    log.flush()
    log.checkpoint()
    del log  # crash after an acknowledged flush
    first = sorted(directory.glob("*.log"))[0]
    data = first.read_bytes()
    os.truncate(first, int.from_bytes(data[8:12], "big") + 12)  # keep only the first batch
    with pytest.raises(CorruptLogError):
        open_log(directory, **{"internal.segment.bytes": 2048})


def test_index_entries_a_group_commit_left_in_memory_are_rebuilt_after_a_crash(tmp_path: Path) -> None:
    """Group commits write the log, not the active segment's index entries (derived data,
    written at roll and close): a crash leaves the index files behind the log, and every
    lookup by offset and by time still lands after the restart."""
    directory = tmp_path / "t-0"
    batches = 200
    log = open_log(directory, **{"index.interval.bytes": 1})  # an index entry per batch
    base = now_ms() - 100_000
    for i in range(batches):
        log.append(make_batch(count=2, timestamp_ms=base + 10 * i, tag=i), now_ms())
        log.flush()
    log.checkpoint()  # the recovery point at the log end
    assert (directory / f"{SEGMENT}.index").stat().st_size < batches * 8, "entries were written at each commit"
    content = read_everything(log)
    del log  # a crash
    log, report = PartitionLog.open(directory, log_config_for(TopicConfig(index_interval_bytes=1)))
    assert not report.clean_shutdown and report.segments_scanned == 1
    assert read_everything(log) == content
    for i in range(batches):
        piece = log.read(2 * i + 1, 1, log.log_end_offset)
        assert piece is not None and (piece.first_offset, piece.last_offset) == (2 * i, 2 * i + 1)
        assert log.offset_for_timestamp(base + 10 * i + 1) == (2 * i + 1, base + 10 * i + 1)
    log.close()
    # A clean close writes them all: one per batch after the first (at position 0, Kafka's rule).
    assert (directory / f"{SEGMENT}.index").stat().st_size == (batches - 1) * 8
    assert (directory / f"{SEGMENT}.timeindex").stat().st_size == (batches - 1) * 12
