"""Group commit: concurrent durable appends share fsyncs, and acked data survives SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

from tests.conftest import make_batch, read_everything
from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import iter_batches
from tidelog.storage import LogManager, TopicPartition
from tidelog.storage._engine import PartitionLog
from tidelog.storage.unified_log import GroupCommit, log_config_for, now_ms


def test_concurrent_durable_appends_share_fsyncs(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path)
    manager.create_topic("t", 1)
    partition = manager.get(TopicPartition("t", 0))
    assert partition is not None
    producers, appends_each = 20, 25

    async def produce(tag: int) -> list[int]:
        offsets = []
        for i in range(appends_each):
            info = await partition.append_durable(make_batch(count=2, tag=tag * 1000 + i))
            assert partition.log.recovery_point > info.last_offset, "acked only once durable"
            offsets.append(info.first_offset)
        return offsets

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(produce(p) for p in range(producers)))

    results = asyncio.run(main())
    total = producers * appends_each
    assert sorted(o for offsets in results for o in offsets) == list(range(0, 2 * total, 2))
    assert partition.group_commit.flushes < total / 2, "fsyncs are shared between producers"
    manager.close()


PRODUCER = textwrap.dedent(
    """
    import asyncio, sys
    from tests.conftest import make_batch
    from tidelog.storage import LogManager, TopicPartition

    async def main():
        manager = LogManager.open(sys.argv[1])
        if "t" not in manager.topics:
            manager.create_topic("t", 1)
        partition = manager.get(TopicPartition("t", 0))
        tag = 0
        while True:
            tasks = [partition.append_durable(make_batch(count=3, tag=tag + i)) for i in range(8)]
            for info in await asyncio.gather(*tasks):
                print(info.first_offset, flush=True)
            tag += 8

    asyncio.run(main())
    """
)


def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    acked: list[int] = []
    for _ in range(3):
        process = subprocess.Popen(
            [sys.executable, "-c", PRODUCER, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        assert process.stdout is not None
        for _ in range(200):
            acked.append(int(process.stdout.readline()))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    manager = LogManager.open(tmp_path)
    partition = manager.get(TopicPartition("t", 0))
    assert partition is not None
    stored = {header.base_offset for header, _ in iter_batches(read_everything(partition.log))}
    assert set(acked) <= stored
    manager.close()


class SlowFlush:
    """A real log whose flush returns FLUSH_HOLD_S after its fsync: room to append after what
    it made durable and before the flush thread looks for more."""

    FLUSH_HOLD_S = 0.05

    def __init__(self, log: PartitionLog) -> None:
        self.log = log
        self.flushed = threading.Event()

    def flush(self) -> int:
        durable = self.log.flush()
        self.flushed.set()
        time.sleep(self.FLUSH_HOLD_S)
        return durable

    def __getattr__(self, name: str) -> object:
        return getattr(self.log, name)


def test_the_flush_thread_starts_the_next_flush_while_the_loop_is_busy(tmp_path: Path) -> None:
    """An append made during a flush is made durable by the next flush, which the flush thread
    starts itself: the event loop stays blocked here the whole time and durability still moves."""
    log, _ = PartitionLog.open(tmp_path / "t-0", log_config_for(TopicConfig()))
    slow = SlowFlush(log)
    executor = ThreadPoolExecutor(1)

    async def main() -> None:
        commit = GroupCommit(cast(PartitionLog, slow), executor)
        first = log.append(make_batch(tag=1), now_ms())
        first_durable = commit.durable_future(first.last_offset)
        assert first_durable is not None
        assert slow.flushed.wait(5), "the first flush ran"
        second = log.append(make_batch(tag=2), now_ms())  # after what it made durable
        second_durable = commit.durable_future(second.last_offset)
        assert second_durable is not None
        deadline = time.monotonic() + 5
        while log.recovery_point <= second.last_offset and time.monotonic() < deadline:
            time.sleep(0.005)  # the loop stays blocked
        assert log.recovery_point > second.last_offset, "the second flush waited for the event loop"
        await asyncio.wait_for(asyncio.gather(first_durable, second_durable), 5)
        assert commit.flush_seconds.counts != [0] * len(commit.flush_seconds.counts)

    asyncio.run(main())
    executor.shutdown()
    log.close()
