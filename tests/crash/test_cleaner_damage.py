"""A log whose segments overlap (found by tests/crash/test_clean_sigkill.py's
`adopt_uncommitted_swap` sabotage: a cleaned segment renamed into place beside the old
segments it was to replace). No crash of a correct swap makes one; damage or a wrong tool can.

The damage is refused like any other: by the open (CorruptLogError: a segment holds offsets past
the next one's base), or by a pass (the cleaner takes a batch reaching the next segment's base as
damage). Before that fix the open accepted it and a pass panicked in `Segment::append`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import build_batch
from tidelog.storage import Cleaner, CorruptLogError, LogConfig, PartitionLog, StorageError, log_config_for


def compact_config(segment_bytes: int) -> LogConfig:
    overrides = {"cleanup.policy": "compact", "internal.segment.bytes": str(segment_bytes)}
    return log_config_for(TopicConfig().with_overrides(overrides))


def test_overlapping_segments_are_refused_not_a_panic(tmp_path: Path) -> None:
    directory = tmp_path / "c-0"
    log, _ = PartitionLog.open(directory, compact_config(segment_bytes=1024))
    now = time.time_ns() // 1_000_000
    for i in range(40):  # every key once: the pass keeps every record
        log.append(build_batch([(now, f"k{i}".encode(), b"v" * 50, [])]), now)
    log.close()
    first, second = sorted(directory.glob("*.log"))[:2]
    first.write_bytes(first.read_bytes() + second.read_bytes())  # segment 0 also holds segment 8's batches
    # Segments big enough for the pass to group them all into one cleaned segment.
    try:
        log, _ = PartitionLog.open(directory, compact_config(segment_bytes=65536))
    except CorruptLogError:
        return  # refused at the open
    try:
        with pytest.raises(StorageError):
            Cleaner(1 << 20).clean(log, now, log.log_end_offset, [])
    except BaseException as error:  # the panic: a failure here, not an abort of the test run
        if isinstance(error, Exception):
            raise
        pytest.fail(f"the pass ended with {type(error).__name__}: {error}")
