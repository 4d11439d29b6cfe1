"""`tidelog recover`: what is damaged in a data directory's logs, and (with the flag) the log cut
at the first bad batch, with the broker stopped.

Each segment is scanned whole, as a verification pass does (framing, CRC-32C, contents,
increasing offsets). A damaged batch is reported with its segment, position and offsets, and
whether it lies below the recovery point (flushed, so possibly acknowledged). A segment that
ends before the next one begins is a gap. Repairing never deletes: the damaged segment's original
bytes, every later segment and the producer snapshots past the cut go into
`<partition>/recovered-<time>/`; the damaged segment is cut at its first bad batch; the log is
then opened once, which rebuilds its indexes and producer state.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tidelog.storage._engine import read_checkpoint, scan_segment, write_checkpoint
from tidelog.storage.durable_file import fsync_directory, fsync_path
from tidelog.storage.log_manager import LOCK_FILE, LogManager
from tidelog.storage.producer_state import snapshot_offsets, snapshot_path

NO_END = 2**63 - 1  # the end offset of the last segment's trailing damage: unknown
INDEX_SUFFIXES = (".index", ".timeindex", ".txnindex")
ASIDE_PREFIX = "recovered-"


class RecoverRefused(Exception):
    """The data directory is in use, or is not one."""


@dataclass(frozen=True)
class Damage:
    segment: Path
    base_offset: int
    position: int
    end_position: int
    first_offset: int
    last_offset: int  # NO_END - 1: to the end of the log
    reason: str
    # Below the recovery point, or the log was closed cleanly: flushed, so possibly acknowledged.
    flushed: bool

    def offsets(self) -> str:
        return f"{self.first_offset}..{'end' if self.last_offset >= NO_END - 1 else self.last_offset}"


@dataclass
class PartitionReport:
    directory: Path
    recovery_point: int | None
    log_start_offset: int
    clean_shutdown: bool
    segments: list[tuple[int, Path]]
    log_end_offset: int
    damage: list[Damage] = field(default_factory=list)
    set_aside: list[Path] = field(default_factory=list)


def partition_directories(data_dir: Path, only: Sequence[str] = ()) -> list[Path]:
    """The partition directories (`<topic>-<n>`) of `data_dir`, or those named in `only`."""
    if only:
        missing = [name for name in only if not (data_dir / name).is_dir()]
        if missing:
            raise RecoverRefused(f"no partition directory {', '.join(missing)} in {data_dir}")
        return [data_dir / name for name in only]
    found = []
    for entry in sorted(data_dir.iterdir()):
        topic, _, number = entry.name.rpartition("-")
        if entry.is_dir() and topic and number.isdigit():
            found.append(entry)
    return found


def segments_of(directory: Path) -> list[tuple[int, Path]]:
    bases = []
    for path in directory.glob("*.log"):
        if path.stem.isdigit():
            bases.append((int(path.stem), path))
    return sorted(bases)


def inspect(directory: Path) -> PartitionReport:
    """Scans every segment of one partition."""
    checkpoint = read_checkpoint(directory)
    recovery_point, log_start, clean = checkpoint if checkpoint is not None else (None, 0, False)
    segments = segments_of(directory)
    report = PartitionReport(directory, recovery_point, log_start, clean, segments, log_start)
    for at, (base, path) in enumerate(segments):
        next_base = segments[at + 1][0] if at + 1 < len(segments) else NO_END
        if next_base <= log_start:
            continue  # below the log start: the next open deletes it
        size, next_offset, damaged = scan_segment(path, base, next_base)
        for position, end_position, first, last, reason in damaged:
            report.damage.append(
                Damage(path, base, position, end_position, first, last, reason, _flushed(report, first))
            )
        trailing = damaged and damaged[-1][1] >= size
        if not trailing and next_base != NO_END and next_offset < next_base:
            reason = f"the segment ends at offset {next_offset} but the next one starts at {next_base}"
            report.damage.append(
                Damage(path, base, size, size, next_offset, next_base - 1, reason, _flushed(report, next_offset))
            )
        report.log_end_offset = max(report.log_end_offset, next_offset)
    aside = directory / "set-aside"
    if aside.is_dir():
        report.set_aside = sorted(aside.glob("*.log"))
    return report


def _flushed(report: PartitionReport, offset: int) -> bool:
    return report.clean_shutdown or (report.recovery_point is not None and offset < report.recovery_point)


@dataclass(frozen=True)
class Cut:
    """What repairing a partition does: cut `segment` at `position` (offset `first_gone` on)."""

    damage: Damage
    later: list[Path]  # segments moved aside whole
    snapshots: list[Path]  # producer snapshots past the cut, moved aside
    last_offset: int  # the last offset the log held (before the cut)


def plan(report: PartitionReport) -> Cut | None:
    if not report.damage:
        return None
    first = min(report.damage, key=lambda d: d.first_offset)
    later = [path for base, path in report.segments if base > first.base_offset]
    snapshots = [
        snapshot_path(report.directory, o) for o in snapshot_offsets(report.directory) if o > first.first_offset
    ]
    last = max(report.log_end_offset, *(d.last_offset + 1 for d in report.damage if d.last_offset < NO_END - 1)) - 1
    return Cut(first, later, snapshots, last)


def repair(report: PartitionReport, cut: Cut) -> Path:
    """Moves the damage aside and cuts the log at it; returns the directory holding what moved."""
    directory = report.directory
    aside = directory / time.strftime(f"{ASIDE_PREFIX}%Y%m%dT%H%M%SZ", time.gmtime())
    aside.mkdir()
    damaged = cut.damage.segment
    shutil.copy2(damaged, aside / damaged.name)  # the original bytes, whole
    fsync_path(aside / damaged.name)
    for path in cut.later:
        for file in _segment_files(path):
            os.replace(file, aside / file.name)
    for file in _segment_files(damaged):
        if file != damaged:
            os.replace(file, aside / file.name)  # its indexes: rebuilt at the next open
    for snapshot in cut.snapshots:
        os.replace(snapshot, aside / snapshot.name)
    os.truncate(damaged, cut.damage.position)
    fsync_path(damaged)
    fsync_directory(aside)
    # The next open scans the cut segment and everything after it (nothing is), and rebuilds.
    recovery_point = min(report.recovery_point or 0, cut.damage.base_offset)
    write_checkpoint(directory, recovery_point, report.log_start_offset, False)
    fsync_directory(directory)
    return aside


def _segment_files(log_file: Path) -> Iterator[Path]:
    yield log_file
    for suffix in INDEX_SUFFIXES:
        path = log_file.with_suffix(suffix)
        if path.exists():
            yield path


def recover(data_dir: Path, partitions: Sequence[str], truncate: bool, dry_run: bool, out: TextIO) -> int:
    """The command: reports every partition's damage; with `truncate`, cuts each damaged log at
    its first bad batch (only says what it would do with `dry_run`). Exit status: 0 when nothing
    is damaged (or everything damaged was cut), 1 when damage remains."""
    if not data_dir.is_dir():
        raise RecoverRefused(f"{data_dir} is not a directory")
    with open(data_dir / LOCK_FILE, "ab") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RecoverRefused(f"{data_dir} is in use by a running broker: stop it first") from None
        reports = [inspect(directory) for directory in partition_directories(data_dir, partitions)]
        damaged = [r for r in reports if r.damage]
        for report in reports:
            _print_report(report, out)
        print(
            f"{len(reports)} partition(s) scanned, {sum(len(r.damage) for r in reports)} damaged batch(es) "
            f"in {len(damaged)}",
            file=out,
        )
        if not damaged or not truncate:
            if damaged:
                print("run again with --truncate-at-corruption to cut these logs at their first bad batch", file=out)
            return 1 if damaged else 0
        for report in damaged:
            cut = plan(report)
            assert cut is not None
            gone = f"offsets {cut.damage.first_offset}..{cut.last_offset}"
            name = report.directory.name
            if dry_run:
                print(
                    f"{name}: would cut {cut.damage.segment.name} at byte {cut.damage.position}, move "
                    f"{len(cut.later)} later segment(s) aside; {gone} would be gone",
                    file=out,
                )
                continue
            aside = repair(report, cut)
            print(
                f"{name}: cut {cut.damage.segment.name} at byte {cut.damage.position}; {gone} are gone "
                f"({cut.last_offset - cut.damage.first_offset + 1} offset(s)); the original files are in "
                f"{aside.relative_to(data_dir)}/",
                file=out,
            )
    if dry_run:
        return 1
    # Open once: rebuilds the cut logs' indexes and producer state, and proves they open.
    logs = LogManager.open(data_dir)
    ends = {tp.directory_name(): log.log.log_end_offset for tp, log in logs.partitions.items()}
    logs.close()
    for report in damaged:
        print(f"{report.directory.name}: opens; log end offset now {ends.get(report.directory.name)}", file=out)
    return 0


def _print_report(report: PartitionReport, out: TextIO) -> None:
    point = "none" if report.recovery_point is None else str(report.recovery_point)
    state = "closed cleanly" if report.clean_shutdown else "not closed cleanly"
    print(
        f"{report.directory.name}: {len(report.segments)} segment(s), offsets {report.log_start_offset}.."
        f"{report.log_end_offset - 1}, recovery point {point}, {state}",
        file=out,
    )
    for damage in report.damage:
        flushed = "below the recovery point: possibly acknowledged" if damage.flushed else "not flushed"
        print(
            f"  damaged: {damage.segment.name} bytes {damage.position}..{damage.end_position}, offsets "
            f"{damage.offsets()} ({flushed}): {damage.reason}",
            file=out,
        )
    for path in report.set_aside:
        print(f"  set aside by an earlier recovery (never acknowledged): set-aside/{path.name}", file=out)
