"""offsets.retention.minutes: a group Empty for that long loses its offsets, and then itself;
a group with members keeps them. Run in process over the broker core and the real engine."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from tests.core_harness import running_broker, until_loaded
from tidelog.coordinator.group.shard import CommitRequest, JoinRequest, SyncRequest
from tidelog.core.broker import Broker


def valid(topic: str, partition: int) -> bool:
    return topic == "events" and partition < 2


def commit(group: str, generation: int, member: str, offsets: dict[tuple[str, int], int]) -> CommitRequest:
    return CommitRequest(group, generation, member, None, {tp: (o, -1, "", -1) for tp, o in offsets.items()})


async def join_and_sync(broker: Broker, group: str, subscription: bytes = b"") -> tuple[int, str]:
    join = JoinRequest(group, "", None, "c", "/h", 10_000, 10_000, "consumer", [("range", subscription)], 1)
    joined = await broker.groups.join(join)
    sync = SyncRequest(group, joined.generation, joined.member_id, None, None, None, {joined.member_id: b"a"})
    assert (await broker.groups.sync(sync)).error == 0
    return joined.generation, joined.member_id


def test_offsets_of_empty_groups_expire_and_the_group_goes(tmp_path: Path) -> None:
    settings = {
        "offsets_topic_num_partitions": 3,
        "offsets_retention_minutes": 0,
        "group_initial_rebalance_delay_ms": 0,
        "group_min_session_timeout_ms": 10,
    }

    async def scenario() -> None:
        async with running_broker(tmp_path, **settings) as broker:
            coordinator = broker.groups
            assert await coordinator.commit(commit("simple", -1, "", {("events", 0): 5}), valid)
            generation, member = await join_and_sync(broker, "managed")
            await coordinator.commit(commit("managed", generation, member, {("events", 1): 9}), valid)
            assert await coordinator.expire_offsets() == 1  # only the simple group's: the other has a member
            assert coordinator.fetch_offsets("simple", [("events", 0)])[("events", 0)].offset == -1
            assert coordinator.describe("simple") is None
            assert coordinator.fetch_offsets("managed", [("events", 1)])[("events", 1)].offset == 9
            coordinator.leave("managed", [(member, None)])
            await asyncio.sleep(0.05)  # the join timer completes the now empty generation
            assert await coordinator.expire_offsets() == 1
            assert coordinator.describe("managed") is None

    asyncio.run(scenario())

    async def reload() -> None:
        async with running_broker(tmp_path, **settings) as broker:
            await until_loaded(broker)
            assert broker.groups.list_groups() == []  # the tombstones were written, not only applied

    asyncio.run(reload())


def test_retention_keeps_recent_offsets(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_broker(tmp_path, offsets_topic_num_partitions=1, offsets_retention_minutes=60) as broker:
            await broker.groups.commit(commit("simple", -1, "", {("events", 0): 5}), valid)
            assert await broker.groups.expire_offsets() == 0
            assert broker.groups.fetch_offsets("simple", [("events", 0)])[("events", 0)].offset == 5

    asyncio.run(scenario())


def consumer_subscription(*topics: str) -> bytes:
    """ConsumerProtocolSubscription v0."""
    body = struct.pack(">hi", 0, len(topics)) + b"".join(struct.pack(">h", len(t)) + t.encode() for t in topics)
    return body + struct.pack(">i", -1)


def test_a_stable_group_loses_offsets_of_topics_it_no_longer_consumes(tmp_path: Path) -> None:
    """KIP-496: the member subscribes to `events` only; its old offset for `other` expires."""
    settings = {
        "offsets_topic_num_partitions": 1,
        "offsets_retention_minutes": 0,
        "group_initial_rebalance_delay_ms": 0,
    }

    async def scenario() -> None:
        async with running_broker(tmp_path, **settings) as broker:
            generation, member = await join_and_sync(broker, "moving", consumer_subscription("events"))
            offsets = {("events", 0): 5, ("other", 0): 7}
            await broker.groups.commit(commit("moving", generation, member, offsets), lambda topic, partition: True)
            assert await broker.groups.expire_offsets() == 1
            fetched = broker.groups.fetch_offsets("moving", [("events", 0), ("other", 0)])
            assert (fetched[("events", 0)].offset, fetched[("other", 0)].offset) == (5, -1)

    asyncio.run(scenario())
