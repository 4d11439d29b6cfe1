"""The coordinator runtime's contract, on the group coordinator over the real engine: answers
only after the records are durable and replayed; shards unloaded and loaded one by one; a write
in flight when its shard unloads answers NOT_COORDINATOR; loading answers
COORDINATOR_LOAD_IN_PROGRESS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.core_harness import running_broker, until_loaded
from tidelog.coordinator.group import records
from tidelog.coordinator.group.shard import CommitRequest
from tidelog.coordinator.runtime import CoordinatorLoadInProgress, CoordinatorResult, NotCoordinator
from tidelog.core.broker import Broker

PARTITIONS = 4


def commit(group: str, offset: int) -> CommitRequest:
    return CommitRequest(group, -1, "", None, {("events", 0): (offset, -1, "", -1)})


def group_in(partition: int) -> str:
    return next(f"g{i}" for i in range(10_000) if records.partition_for(f"g{i}", PARTITIONS) == partition)


async def setup(broker: Broker) -> tuple[str, str]:
    broker.create_topic("events", 1)
    broker.groups.ensure_offsets_topic()
    here, there = group_in(1), group_in(2)
    for group, offset in ((here, 5), (there, 7)):
        assert await broker.groups.commit(commit(group, offset), broker.has_partition) == {("events", 0): 0}
    return here, there


def test_a_commit_is_answered_once_durable_and_replayed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_broker(tmp_path, offsets_topic_num_partitions=PARTITIONS) as broker:
            here, _ = await setup(broker)
            partition = broker.partition("__consumer_offsets", 1)
            assert partition is not None
            answer = asyncio.ensure_future(broker.groups.commit(commit(here, 9), broker.has_partition))
            await asyncio.sleep(0)
            shard = broker.groups.runtime.shard(1)
            assert shard.groups[here].offsets[("events", 0)].offset == 5, "not replayed before durable"
            await answer
            assert partition.log.durable_offset == partition.log_end_offset, "answered once durable"
            assert shard.groups[here].offsets[("events", 0)].offset == 9

    asyncio.run(scenario())


def test_shards_unload_and_load_one_by_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_broker(tmp_path, offsets_topic_num_partitions=PARTITIONS) as broker:
            here, there = await setup(broker)
            runtime = broker.groups.runtime
            log = runtime.context(1).log
            runtime.unload(1)
            with pytest.raises(NotCoordinator):
                broker.groups.fetch_offsets(here, [("events", 0)])
            assert broker.groups.fetch_offsets(there, [("events", 0)])[("events", 0)].offset == 7, "others serve on"
            runtime.load(1, log)
            with pytest.raises(CoordinatorLoadInProgress):
                broker.groups.fetch_offsets(here, [("events", 0)])
            await until_loaded(broker)
            assert broker.groups.fetch_offsets(here, [("events", 0)])[("events", 0)].offset == 5, "rebuilt by replay"

    asyncio.run(scenario())


def test_a_write_in_flight_when_its_shard_unloads_answers_not_coordinator(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_broker(tmp_path, offsets_topic_num_partitions=PARTITIONS) as broker:
            here, _ = await setup(broker)
            runtime = broker.groups.runtime
            key = records.offset_key(records.OffsetKey(here, "events", 0))
            value = records.offset_value(records.OffsetAndMetadata(11, -1, "", 1))
            pending = asyncio.ensure_future(runtime.write(1, lambda shard: CoordinatorResult([(key, value)], "ok")))
            await asyncio.sleep(0)
            runtime.unload(1)
            with pytest.raises(NotCoordinator):
                await pending

    asyncio.run(scenario())
