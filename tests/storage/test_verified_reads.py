"""Verified reads: a batch is checked before it is first served after the log was opened, and a
damaged one is never served (docs/operations.md).

Segments trusted at open (a clean shutdown, or below the recovery point after a crash) are
verified by a pass that the first read starts; reads wait for it (or, without `wait`, are told to
read again). Damage is refused where it is, and the reads around it are served.
"""

from __future__ import annotations

import random
import shutil
import struct
from pathlib import Path

import pytest

from tests.conftest import make_batch, now_ms, open_log, segment_batches
from tidelog.storage import CorruptBatchError, NotVerifiedError, PartitionLog

SEGMENT_BYTES = 64 * 1024
FLIPS = 60
# The first byte a batch's CRC-32C check covers (magic at 16 and the CRC field itself are
# checked too); base offset, length and leader epoch before it are framing.
CHECKED_FROM = 16


def write_clean_log(directory: Path, batches: list[bytes]) -> None:
    log = open_log(directory, **{"internal.segment.bytes": SEGMENT_BYTES})
    for batch in batches:
        log.append(batch, now_ms())
    log.close()


def reopen(directory: Path) -> PartitionLog:
    return open_log(directory, **{"internal.segment.bytes": SEGMENT_BYTES})


def batch_map(directory: Path) -> list[tuple[Path, int, int, int, int]]:
    """(segment file, position, size, base offset, last offset) of every batch, as stored."""
    return [(segment, *batch) for segment in sorted(directory.glob("*.log")) for batch in segment_batches(segment)]


def stored(layout: list[tuple[Path, int, int, int, int]]) -> list[bytes]:
    """Each batch's bytes as the log holds them (offsets assigned)."""
    return [path.read_bytes()[position : position + size] for path, position, size, _, _ in layout]


def served(log: PartitionLog, offset: int) -> tuple[bytes, int, CorruptBatchError | None]:
    """Reads from `offset` to the end or to the first refusal: (bytes, next offset, refusal)."""
    out = bytearray()
    while True:
        try:
            piece = log.read(offset, 1 << 20, log.log_end_offset)
        except CorruptBatchError as refusal:
            return bytes(out), offset, refusal
        if piece is None:
            return bytes(out), offset, None
        out += piece.read()
        offset = piece.last_offset + 1


def flip(path: Path, at: int, bit: int) -> None:
    with open(path, "r+b") as segment:
        segment.seek(at)
        byte = segment.read(1)[0]
        segment.seek(at)
        segment.write(bytes([byte ^ (1 << bit)]))


def test_a_flipped_bit_in_a_trusted_segment_is_never_served(tmp_path: Path) -> None:
    rng = random.Random(20261202)
    batches = [make_batch(count=rng.randint(1, 4), value_bytes=rng.randint(50, 900), tag=i) for i in range(300)]
    pristine = tmp_path / "pristine"
    write_clean_log(pristine, batches)
    layout = batch_map(pristine)
    batches = stored(layout)
    assert len({path for path, *_ in layout}) > 3, "the log spans several segments"
    work = tmp_path / "work"
    for _ in range(FLIPS):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work)
        index = rng.randrange(len(layout))
        path, position, size, first, last = layout[index]
        flip(work / path.name, position + rng.randrange(CHECKED_FROM, size), rng.randrange(8))
        log = reopen(work)
        assert log.unverified_bytes > 0, "a clean shutdown trusts every segment"
        before = b"".join(batches[:index])
        data, stopped_at, refusal = served(log, 0)
        # Everything before the damaged batch, byte for byte, and not one byte of it.
        assert data == before
        assert refusal is not None and stopped_at == first
        assert f"offsets {first}..={last}" in str(refusal)
        with pytest.raises(CorruptBatchError):
            log.read(last, 1 << 20, log.log_end_offset)
        # The batches after it are served: its length still frames the next one.
        data, _, refusal = served(log, last + 1)
        assert refusal is None and data == b"".join(batches[index + 1 :])
        damage = log.take_damage()
        assert [(Path(d[0]).name, d[1], d[2], d[3], d[4]) for d in damage] == [
            (path.name, position, position + size, first, last)
        ]
        assert log.take_damage() == [], "each damaged batch is reported once"
        log.close()


def test_a_broken_length_refuses_the_rest_of_the_trusted_segment(tmp_path: Path) -> None:
    batches = [make_batch(count=2, value_bytes=2000, tag=i) for i in range(60)]
    write_clean_log(tmp_path / "t-0", batches)
    layout = batch_map(tmp_path / "t-0")
    batches = stored(layout)
    path, position, _, first, _ = layout[10]
    assert layout[11][0] == path, "the damaged batch is not the last of its segment"
    with open(path, "r+b") as segment:  # batchLength: far past the end of the file
        segment.seek(position + 8)
        segment.write(struct.pack(">i", 0x7FFF0000))
    log = reopen(tmp_path / "t-0")
    data, stopped_at, refusal = served(log, 0)
    assert data == b"".join(batches[:10]) and stopped_at == first and refusal is not None
    # Offsets after it in the same segment cannot be framed: refused too; the next segment is served.
    segment_end = max(last for p, _, _, _, last in layout if p == path)
    with pytest.raises(CorruptBatchError):
        log.read(segment_end, 1 << 20, log.log_end_offset)
    next_index = next(i for i, row in enumerate(layout) if row[3] > segment_end)
    data, _, refusal = served(log, segment_end + 1)
    assert refusal is None and data == b"".join(batches[next_index:])


def test_a_read_without_wait_is_told_to_read_again_until_the_pass_reaches_it(tmp_path: Path) -> None:
    batches = [make_batch(count=3, value_bytes=1000, tag=i) for i in range(400)]
    write_clean_log(tmp_path / "t-0", batches)
    batches = stored(batch_map(tmp_path / "t-0"))
    log = reopen(tmp_path / "t-0")
    end = log.log_end_offset
    with pytest.raises(NotVerifiedError):
        log.read(0, 1 << 20, end, True, False)  # this read started the pass
    out = bytearray()
    offset, refused = 0, 0
    while offset < end:
        try:
            piece = log.read(offset, 16 * 1024, end, True, False)
        except NotVerifiedError:
            refused += 1
            continue
        assert piece is not None
        out += piece.read()
        offset = piece.last_offset + 1
    assert bytes(out) == b"".join(batches)
    assert log.unverified_bytes == 0
    log.close()


def test_scanned_segments_and_appends_need_no_pass(tmp_path: Path) -> None:
    batches = [make_batch(count=2, value_bytes=500, tag=i) for i in range(100)]
    log = open_log(tmp_path / "t-0", **{"internal.segment.bytes": SEGMENT_BYTES})
    for batch in batches:
        log.append(batch, now_ms())
    del log  # a crash before any flush: recovery scans every segment
    log = reopen(tmp_path / "t-0")
    assert log.unverified_bytes == 0
    assert log.read(0, 1 << 20, log.log_end_offset, True, False) is not None
    appended = log.append(make_batch(tag=999), now_ms())
    assert log.read(appended.first_offset, 1 << 20, log.log_end_offset, True, False) is not None
    log.close()


def test_the_scrub_verifies_at_its_rate_and_finds_damage_no_read_reached(tmp_path: Path) -> None:
    batches = [make_batch(count=2, value_bytes=2000, tag=i) for i in range(200)]
    write_clean_log(tmp_path / "t-0", batches)
    layout = batch_map(tmp_path / "t-0")
    path, position, size, first, last = layout[150]
    flip(path, position + size - 1, 0)
    log = reopen(tmp_path / "t-0")
    total = log.unverified_bytes
    assert log.scrub(0, 64 * 1024) >= 64 * 1024, "a step checks about its budget"
    checked = 0
    while step := log.scrub(0, 64 * 1024):
        checked += step
    assert log.unverified_bytes == 0 and checked > 0 and checked < total
    assert [(d[1], d[3], d[4]) for d in log.take_damage()] == [(position, first, last)]
    log.close()
