"""offsets.retention.minutes: a group Empty for that long loses its offsets, and then itself;
a group with members keeps them. Run in-process over the real storage engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tidelog.config import BrokerConfig
from tidelog.coordinator.group_coordinator import CommitRequest, GroupCoordinator, JoinRequest
from tidelog.server.broker import OffsetsPartitionLog
from tidelog.storage import LogManager, TopicPartition

TOPIC = "__consumer_offsets"


def coordinator_over(data_dir: Path, config: BrokerConfig) -> tuple[GroupCoordinator, LogManager]:
    manager = LogManager.open(str(data_dir), config.topic_defaults)
    manager.create_topic("events", 2) if "events" not in manager.topics else None

    def open_topic() -> list[OffsetsPartitionLog]:
        if TOPIC not in manager.topics:
            manager.create_topic(TOPIC, config.offsets_topic_num_partitions, {"cleanup.policy": "compact"})
        return [
            OffsetsPartitionLog(manager.get(TopicPartition(TOPIC, i)))
            for i in range(config.offsets_topic_num_partitions)
        ]  # type: ignore[arg-type]

    return GroupCoordinator(config, open_topic), manager  # type: ignore[arg-type]


def valid(topic: str, partition: int) -> bool:
    return topic == "events" and partition < 2


def test_offsets_of_empty_groups_expire_and_the_group_goes(tmp_path: Path) -> None:
    config = BrokerConfig(
        offsets_topic_num_partitions=3,
        offsets_retention_minutes=0,
        group_initial_rebalance_delay_ms=0,
        group_min_session_timeout_ms=10,
    )

    async def scenario() -> None:
        coordinator, manager = coordinator_over(tmp_path, config)
        assert await coordinator.commit(CommitRequest("simple", -1, "", None, {("events", 0): (5, -1, "", -1)}), valid)
        join = JoinRequest("managed", "", None, "c", "/h", 10_000, 10_000, "consumer", [("range", b"")], 1)
        joined = await coordinator.join(join)
        await coordinator.sync(
            "managed", joined.generation, joined.member_id, None, None, None, {joined.member_id: b"a"}
        )
        await coordinator.commit(
            CommitRequest("managed", joined.generation, joined.member_id, None, {("events", 1): (9, -1, "", -1)}), valid
        )
        assert await coordinator.expire_offsets() == 1  # only the simple group's: the other has a member
        assert coordinator.fetch_offsets("simple", [("events", 0)])[("events", 0)].offset == -1
        assert coordinator.describe("simple") is None
        assert coordinator.fetch_offsets("managed", [("events", 1)])[("events", 1)].offset == 9
        coordinator.leave("managed", [(joined.member_id, None)])
        await asyncio.sleep(0.05)  # the join timer completes the now empty generation
        assert await coordinator.expire_offsets() == 1
        assert coordinator.describe("managed") is None
        coordinator.close()
        manager.close()

    asyncio.run(scenario())

    async def reload() -> None:
        coordinator, manager = coordinator_over(tmp_path, config)
        offsets_topic = [OffsetsPartitionLog(manager.get(TopicPartition(TOPIC, i))) for i in range(3)]  # type: ignore[arg-type]
        coordinator.start(offsets_topic)  # type: ignore[arg-type]
        while not coordinator.loaded():
            await asyncio.sleep(0.01)
        assert coordinator.list_groups() == []  # the tombstones were written, not only applied
        coordinator.close()
        manager.close()

    asyncio.run(reload())


def test_retention_keeps_recent_offsets(tmp_path: Path) -> None:
    config = BrokerConfig(offsets_topic_num_partitions=1, offsets_retention_minutes=60)

    async def scenario() -> None:
        coordinator, manager = coordinator_over(tmp_path, config)
        await coordinator.commit(CommitRequest("simple", -1, "", None, {("events", 0): (5, -1, "", -1)}), valid)
        assert await coordinator.expire_offsets() == 0
        assert coordinator.fetch_offsets("simple", [("events", 0)])[("events", 0)].offset == 5
        coordinator.close()
        manager.close()

    asyncio.run(scenario())


def consumer_subscription(*topics: str) -> bytes:
    """ConsumerProtocolSubscription v0."""
    import struct

    body = struct.pack(">hi", 0, len(topics)) + b"".join(struct.pack(">h", len(t)) + t.encode() for t in topics)
    return body + struct.pack(">i", -1)


def test_a_stable_group_loses_offsets_of_topics_it_no_longer_consumes(tmp_path: Path) -> None:
    """KIP-496: the member subscribes to `events` only; its old offset for `other` expires."""
    config = BrokerConfig(
        offsets_topic_num_partitions=1, offsets_retention_minutes=0, group_initial_rebalance_delay_ms=0
    )

    def valid_any(topic: str, partition: int) -> bool:
        return True

    async def scenario() -> None:
        coordinator, manager = coordinator_over(tmp_path, config)
        join = JoinRequest(
            "moving", "", None, "c", "/h", 10_000, 10_000, "consumer", [("range", consumer_subscription("events"))], 1
        )
        joined = await coordinator.join(join)
        await coordinator.sync("moving", joined.generation, joined.member_id, None, None, None, {joined.member_id: b""})
        offsets = {("events", 0): (5, -1, "", -1), ("other", 0): (7, -1, "", -1)}
        await coordinator.commit(CommitRequest("moving", joined.generation, joined.member_id, None, offsets), valid_any)
        assert await coordinator.expire_offsets() == 1
        fetched = coordinator.fetch_offsets("moving", [("events", 0), ("other", 0)])
        assert (fetched[("events", 0)].offset, fetched[("other", 0)].offset) == (5, -1)
        coordinator.close()
        manager.close()

    asyncio.run(scenario())
