"""Group commit: concurrent durable appends share fsyncs, and acked data survives SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import make_batch, read_everything
from tidelog.protocol.record_batch import iter_batches
from tidelog.storage import LogManager, TopicPartition


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
