"""A log whose segments overlap (found by tests/crash/test_clean_sigkill.py's
`adopt_uncommitted_swap` sabotage: a cleaned segment renamed into place beside the old
segments it was to replace). No crash of a correct swap makes one; damage or a wrong tool can.

Today the open accepts it (after a clean shutdown the older segments are trusted) and a
cleaning pass that keeps records of the overlap panics in `Segment::append` ("offsets must
increase"): a `pyo3_runtime.PanicException`, which derives from BaseException, so the broker's
cleaner task (`except Exception` in core/housekeeping.py) dies with it. Expected: the damage is
refused like any other, by the open (CorruptLogError) or by the pass (a StorageError such as
CorruptBatchError "found by the cleaner", which BatchReader gives for batches out of order
within one segment but not for a batch past the next segment's base).
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


@pytest.mark.xfail(strict=True, reason="engine: overlapping segments make the cleaner panic (see the module comment)")
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
