"""The group coordinator: classic-protocol rebalances and committed offsets, over the runtime.

Every group lives in one shard, the `__consumer_offsets` partition Kafka would pick for it
(`records.partition_for`). This façade checks what needs no shard, routes each request to its
shard through the coordinator runtime, and awaits what the operation answers (a JoinGroup or
SyncGroup waits for the rest of the generation). The rules are in `shard.GroupShard`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from kio.schema.errors import ErrorCode

from tidelog.config import BrokerConfig
from tidelog.coordinator.group import records
from tidelog.coordinator.group.group import ClassicGroup, JoinResult, SyncResult
from tidelog.coordinator.group.shard import (
    CommitRequest,
    CommittedOffset,
    GroupShard,
    JoinRequest,
    SyncRequest,
    TxnCommitRequest,
)
from tidelog.coordinator.runtime import CoordinatorLog, CoordinatorRuntime, ShardContext, now_ms

OFFSETS_TOPIC = "__consumer_offsets"


class GroupCoordinator:
    """Used from the event loop thread only."""

    def __init__(self, config: BrokerConfig, create_offsets_topic: Callable[[], list[CoordinatorLog]]) -> None:
        self.config = config
        self._create_offsets_topic = create_offsets_topic
        self.runtime: CoordinatorRuntime[GroupShard] = CoordinatorRuntime("group", OFFSETS_TOPIC, self._new_shard)
        self.partition_count = 0

    def _new_shard(self, context: ShardContext) -> GroupShard:
        return GroupShard(context, self.config)

    # ---- shards ------------------------------------------------------------------------------

    def start(self, offsets_logs: list[CoordinatorLog]) -> None:
        """Loads every partition of an existing `__consumer_offsets`, one after another."""
        self.partition_count = len(offsets_logs)
        for partition, partition_log in enumerate(offsets_logs):
            self.runtime.load(partition, partition_log)

    def ensure_offsets_topic(self) -> None:
        """Creates `__consumer_offsets` on first use, as Kafka does; nothing to replay then."""
        if self.partition_count:
            return
        offsets_logs = self._create_offsets_topic()
        self.partition_count = len(offsets_logs)
        for partition, partition_log in enumerate(offsets_logs):
            self.runtime.load_empty(partition, partition_log)

    def partition_for(self, group_id: str) -> int:
        self.ensure_offsets_topic()
        return records.partition_for(group_id, self.partition_count)

    def loaded(self) -> bool:
        return self.runtime.fully_loaded()

    def forget_offsets_topic(self) -> None:
        """`__consumer_offsets` is being deleted (Kafka allows it): every shard is unloaded, so
        every group and offset goes; waiting members get NOT_COORDINATOR and find the
        coordinator again, which recreates the topic."""
        self.runtime.unload_all()
        self.partition_count = 0

    def close(self) -> None:
        self.runtime.close()

    # ---- membership --------------------------------------------------------------------------

    def join_refusal(self, request: JoinRequest) -> ErrorCode | None:
        if not request.group_id:
            return ErrorCode.invalid_group_id
        low, high = self.config.group_min_session_timeout_ms, self.config.group_max_session_timeout_ms
        if not low <= request.session_timeout_ms <= high:
            return ErrorCode.invalid_session_timeout
        return None

    async def join(self, request: JoinRequest) -> JoinResult:
        refused = self.join_refusal(request)
        if refused is not None:
            return JoinResult(refused, request.member_id)
        waiter = await self.runtime.write(self.partition_for(request.group_id), lambda s: s.join(request))
        # Shielded: if the client's connection goes, the member still counts as joined (as in
        # Kafka); it then misses SyncGroup and heartbeats, and its session expires.
        return await asyncio.shield(waiter)

    async def sync(self, request: SyncRequest) -> SyncResult:
        if not request.group_id:
            return SyncResult(ErrorCode.invalid_group_id)
        waiter = await self.runtime.write(self.partition_for(request.group_id), lambda s: s.sync(request))
        return await asyncio.shield(waiter)

    def heartbeat(self, group_id: str, generation: int, member_id: str, instance_id: str | None) -> ErrorCode:
        if not group_id:
            return ErrorCode.invalid_group_id
        partition = self.partition_for(group_id)
        return self.runtime.read(partition, lambda s: s.heartbeat(group_id, generation, member_id, instance_id))

    def leave(self, group_id: str, members: Sequence[tuple[str, str | None]]) -> tuple[ErrorCode, list[ErrorCode]]:
        if not group_id:
            return ErrorCode.invalid_group_id, []
        return self.runtime.read(self.partition_for(group_id), lambda s: s.leave(group_id, members))

    # ---- offsets -----------------------------------------------------------------------------

    async def commit(
        self, request: CommitRequest, valid_partition: Callable[[str, int], bool]
    ) -> dict[tuple[str, int], ErrorCode]:
        return await self.runtime.write(
            self.partition_for(request.group_id), lambda s: s.commit(request, valid_partition)
        )

    async def txn_commit(
        self, request: TxnCommitRequest, valid_partition: Callable[[str, int], bool]
    ) -> dict[tuple[str, int], ErrorCode]:
        return await self.runtime.write(
            self.partition_for(request.group_id), lambda s: s.txn_commit(request, valid_partition)
        )

    def fetch_offsets(
        self, group_id: str, partitions: Sequence[tuple[str, int]] | None, require_stable: bool = False
    ) -> dict[tuple[str, int], CommittedOffset]:
        return self.runtime.read(
            self.partition_for(group_id), lambda s: s.fetch_offsets(group_id, partitions, require_stable)
        )

    # ---- admin -------------------------------------------------------------------------------

    def describe(self, group_id: str) -> ClassicGroup | None:
        return self.runtime.read(self.partition_for(group_id), lambda s: s.describe(group_id))

    def shards_loading(self) -> int:
        """Partitions of `__consumer_offsets` still being replayed (readiness)."""
        return self.runtime.loading()

    def loaded_groups(self) -> list[ClassicGroup]:
        """The groups of the shards loaded now, without creating `__consumer_offsets` (metrics)."""
        return [group for _, shard in self.runtime.active_shards() for group in shard.list_groups()]

    def list_groups(self) -> list[ClassicGroup]:
        self.ensure_offsets_topic()
        return [group for _, shard in self.runtime.active_shards() for group in shard.list_groups()]

    async def delete_group(self, group_id: str) -> ErrorCode:
        if not group_id:
            return ErrorCode.invalid_group_id
        return await self.runtime.write(self.partition_for(group_id), lambda s: s.delete_group(group_id))

    async def delete_offsets(
        self, group_id: str, partitions: Sequence[tuple[str, int]]
    ) -> tuple[ErrorCode, dict[tuple[str, int], ErrorCode]]:
        partition = self.partition_for(group_id)
        return await self.runtime.write(partition, lambda s: s.delete_offsets(group_id, partitions))

    def topic_deleted(self, topic: str) -> None:
        """Committed offsets of a deleted topic go too (tombstones), as in Kafka."""
        for context, _ in self.runtime.active_shards():
            what = f"offsets of deleted topic {topic}"
            self.runtime.schedule(context.partition, lambda s: s.offsets_of_deleted_topic(topic), what)

    async def expire_offsets(self) -> int:
        """offsets.retention.minutes over every live shard; returns how many offsets went."""
        retention_ms = self.config.offsets_retention_minutes * 60_000
        now = now_ms()
        removed = 0
        for context, _ in self.runtime.active_shards():
            if self.runtime.is_active(context.partition):
                removed += await self.runtime.write(context.partition, lambda s: s.expire_offsets(now, retention_ms))
        return removed
