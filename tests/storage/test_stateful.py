"""A Hypothesis state machine drives a PartitionLog against a list-of-batches model.

Steps: append, read, roll, flush, checkpoint, retention by bytes, delete-records, a clean
restart, and a crash (drop the log unclosed; optionally tear the tail of unflushed data).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.conftest import make_batch, now_ms, read_everything
from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import iter_batches
from tidelog.storage import PartitionLog, log_config_for

CONFIG = TopicConfig(internal_segment_bytes=3000, index_interval_bytes=256)


def checkpointed_recovery_point(directory: Path) -> int:
    lines = (directory / "log-state.checkpoint").read_text().splitlines()
    return int(lines[1].split()[1])


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp()) / "t-0"
        self.log, _ = PartitionLog.open(self.directory, log_config_for(CONFIG))
        self.batches: list[tuple[int, int, bytes]] = []  # (base offset, next offset, bytes after offset)
        self.log_start_offset = 0
        self.tag = 0

    def teardown(self) -> None:
        shutil.rmtree(self.directory.parent, ignore_errors=True)

    @property
    def next_offset(self) -> int:
        return self.batches[-1][1] if self.batches else self.log_start_offset

    @rule(count=st.integers(1, 6), value_bytes=st.integers(8, 400))
    def append(self, count: int, value_bytes: int) -> None:
        self.tag += 1
        batch = make_batch(count=count, value_bytes=value_bytes, tag=self.tag)
        info = self.log.append(batch, now_ms())
        assert info.first_offset == self.next_offset
        self.batches.append((info.first_offset, info.last_offset + 1, batch[16:]))

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.log_start_offset, self.next_offset))
        piece = self.log.read(offset, data.draw(st.integers(1, 5000)), self.next_offset)
        if offset == self.next_offset:
            assert piece is None
            return
        assert piece is not None
        stored = iter_batches(piece.read())
        assert stored[0][0].base_offset <= offset <= stored[0][0].last_offset
        model = {base: body for base, _, body in self.batches}
        for header, view in stored:
            assert bytes(view[16:]) == model[header.base_offset]

    @rule()
    def roll(self) -> None:
        self.log.roll()

    @rule()
    def flush(self) -> None:
        assert self.log.flush() == self.next_offset

    @rule()
    def checkpoint(self) -> None:
        self.log.checkpoint()

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def delete_records(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.log_start_offset, self.next_offset))
        self.move_log_start(self.log.delete_records_before(offset, self.next_offset))

    @rule()
    def retention(self) -> None:
        config = log_config_for(CONFIG.with_overrides({"retention.bytes": 4000}))
        self.restart(clean=True, config=config)
        self.move_log_start(self.log.delete_old_segments(now_ms(), self.next_offset).log_start_offset)
        self.restart(clean=True)

    def move_log_start(self, offset: int) -> None:
        assert offset >= self.log_start_offset
        self.log_start_offset = offset
        self.batches = [b for b in self.batches if b[1] > offset]

    @rule()
    def clean_restart(self) -> None:
        self.restart(clean=True)

    @rule(tear=st.booleans(), cut=st.integers(1, 60))
    def crash(self, tear: bool, cut: int) -> None:
        """An unclean stop; the last batch may be torn if it was never checkpointed as flushed."""
        self.log = None  # type: ignore[assignment]
        active = sorted(self.directory.glob("*.log"))[-1]
        torn = tear and self.batches and self.batches[-1][0] >= checkpointed_recovery_point(self.directory)
        if torn and active.stat().st_size >= len(self.batches[-1][2]) + 16:
            os.truncate(active, active.stat().st_size - min(cut, len(self.batches[-1][2])))
            self.batches.pop()
        self.restart(clean=False)

    def restart(self, clean: bool, config: object = None) -> None:
        if clean and self.log is not None:
            self.log.close()
        self.log, report = PartitionLog.open(self.directory, config or log_config_for(CONFIG))  # type: ignore[arg-type]
        assert report.clean_shutdown == clean

    @invariant()
    def offsets_match_the_model(self) -> None:
        assert self.log.log_end_offset == self.next_offset
        assert self.log.log_start_offset == self.log_start_offset
        assert self.log.log_start_offset <= self.log.log_end_offset
        assert self.log.recovery_point <= self.log.log_end_offset

    @invariant()
    def whole_log_matches_the_model(self) -> None:
        stored = iter_batches(read_everything(self.log))
        assert [(h.base_offset, bytes(v[16:])) for h, v in stored] == [(base, body) for base, _, body in self.batches]


TestLogMachine = LogMachine.TestCase
TestLogMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
