"""The group coordinator: classic-protocol rebalances and committed offsets.

Every group lives in one shard, the `__consumer_offsets` partition Kafka would pick for it.
Membership moves (join, sync, heartbeat, leave, session expiry) happen in memory on the event
loop, as in Kafka; each completed generation, each commit and each deletion is written to the
shard's log and answered only once durable (see `shard.py`).

Error codes and their order follow Kafka's classic group coordinator, because clients act on
them: UNKNOWN_MEMBER_ID makes a consumer rejoin from scratch, ILLEGAL_GENERATION and
REBALANCE_IN_PROGRESS make it rejoin, FENCED_INSTANCE_ID is fatal to it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from tidelog.config import BrokerConfig
from tidelog.coordinator import records
from tidelog.coordinator.group import ClassicGroup, GroupState, JoinResult, Member, SyncResult
from tidelog.coordinator.records import NO_LEADER_EPOCH, OffsetAndMetadata, OffsetKey
from tidelog.coordinator.shard import KeyValue, OffsetsLog, Shard, now_ms

log = logging.getLogger(__name__)

NO_OFFSET = -1
MEMBER_ID_REQUIRED_MIN_VERSION = 4
# From JoinGroup v9 a static leader that rejoins unchanged is told to skip the assignment.
SKIP_ASSIGNMENT_MIN_VERSION = 9


class ShardLoading(Exception):
    """The group's shard is still being replayed: COORDINATOR_LOAD_IN_PROGRESS."""


@dataclass(frozen=True, slots=True)
class JoinRequest:
    group_id: str
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    version: int


@dataclass(frozen=True, slots=True)
class CommitRequest:
    group_id: str
    generation: int
    member_id: str
    group_instance_id: str | None
    # (topic, partition) → (offset, leader epoch, metadata, expire timestamp or -1)
    offsets: dict[tuple[str, int], tuple[int, int, str | None, int]]


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    offset: int
    leader_epoch: int
    metadata: str
    error: ErrorCode = ErrorCode.none


UNKNOWN_OFFSET = CommittedOffset(NO_OFFSET, NO_LEADER_EPOCH, "")


def group_record(group: ClassicGroup) -> KeyValue:
    """The GroupMetadata record of the group's current generation."""
    return records.group_key(records.GroupKey(group.group_id)), records.group_value(group.to_stored(now_ms()))


def group_tombstone(group_id: str) -> KeyValue:
    return records.group_key(records.GroupKey(group_id)), None


def offset_tombstones(group_id: str, partitions: Iterable[tuple[str, int]]) -> list[KeyValue]:
    return [(records.offset_key(OffsetKey(group_id, topic, partition)), None) for topic, partition in partitions]


class GroupCoordinator:
    def __init__(self, config: BrokerConfig, open_offsets_topic: Callable[[], list[OffsetsLog]]) -> None:
        self.config = config
        self._open_offsets_topic = open_offsets_topic
        self.shards: list[Shard] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- shards ------------------------------------------------------------------------------

    def start(self, offsets_logs: list[OffsetsLog]) -> None:
        """Starts replaying every shard (the topic exists, from an earlier run)."""
        self.shards = [Shard(i, shard_log, self._schedule_loaded_group) for i, shard_log in enumerate(offsets_logs)]
        self._spawn(self._load_all())

    async def _load_all(self) -> None:
        """One partition after another, so each becomes available as early as it can (all at
        once, every group would wait for the slowest)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for shard in self.shards:
            shard_started = loop.time()
            await shard.load()
            await asyncio.sleep(0)  # requests waiting on the loop go first
            if shard.records_loaded:
                log.info(
                    "loaded __consumer_offsets-%d: %d record(s), %d group(s) in %.0f ms",
                    shard.index,
                    shard.records_loaded,
                    len(shard.groups),
                    (loop.time() - shard_started) * 1000,
                )
        total = sum(s.records_loaded for s in self.shards)
        log.info("group coordinator loaded: %d record(s) in %.0f ms", total, (loop.time() - started) * 1000)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def ensure_offsets_topic(self) -> None:
        """Creates `__consumer_offsets` on first use, as Kafka does; nothing to replay then."""
        if self.shards:
            return
        self.shards = [
            Shard(i, shard_log, self._schedule_loaded_group) for i, shard_log in enumerate(self._open_offsets_topic())
        ]
        for shard in self.shards:
            shard.loading = False

    def shard_for(self, group_id: str) -> Shard:
        self.ensure_offsets_topic()
        shard = self.shards[records.partition_for(group_id, len(self.shards))]
        if shard.loading:
            raise ShardLoading(group_id)
        return shard

    def loaded(self) -> bool:
        return bool(self.shards) and not any(s.loading for s in self.shards)

    def forget_offsets_topic(self) -> None:
        """`__consumer_offsets` is being deleted (Kafka allows it): every group and offset goes;
        members waiting get NOT_COORDINATOR and find the coordinator again, which recreates it."""
        for shard in self.shards:
            for group in shard.groups.values():
                self._cancel_timers(group)
                for member in group.members.values():
                    if member.join_waiter is not None and not member.join_waiter.done():
                        member.join_waiter.set_result(JoinResult(ErrorCode.not_coordinator, member.member_id))
                self._fail_syncs(group, ErrorCode.not_coordinator)
                group.move_to(GroupState.DEAD, now_ms())
        for task in self._tasks:
            task.cancel()
        self.shards = []

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for shard in self.shards:
            for group in shard.groups.values():
                self._cancel_timers(group)

    # ---- JoinGroup ---------------------------------------------------------------------------

    async def join(self, request: JoinRequest) -> JoinResult:
        error = self._join_refusal(request)
        if error is not None:
            return JoinResult(error, request.member_id)
        shard = self.shard_for(request.group_id)
        group = shard.groups.get(request.group_id)
        if group is None:
            if request.member_id:
                return JoinResult(ErrorCode.unknown_member_id, request.member_id)
            group = shard.groups[request.group_id] = ClassicGroup(request.group_id, now_ms())
        if group.is_(GroupState.DEAD):
            return JoinResult(ErrorCode.coordinator_not_available, request.member_id)
        if not group.supports(request.protocol_type, request.protocols):
            return JoinResult(ErrorCode.inconsistent_group_protocol, request.member_id)
        if not request.member_id:
            return await self._join_new_member(shard, group, request)
        return await self._join_known_member(shard, group, request)

    def _join_refusal(self, request: JoinRequest) -> ErrorCode | None:
        if not request.group_id:
            return ErrorCode.invalid_group_id
        low, high = self.config.group_min_session_timeout_ms, self.config.group_max_session_timeout_ms
        if not low <= request.session_timeout_ms <= high:
            return ErrorCode.invalid_session_timeout
        return None

    async def _join_new_member(self, shard: Shard, group: ClassicGroup, request: JoinRequest) -> JoinResult:
        known = group.member_for_instance(request.group_instance_id)
        if known is not None:
            return await self._rejoin_static_member(shard, group, known, request)
        if len(group.members) + len(group.pending_members) >= self.config.group_max_size:
            return JoinResult(ErrorCode.group_max_size_reached, "")
        prefix = request.group_instance_id or request.client_id
        member_id = f"{prefix}-{uuid.uuid4()}"
        if request.group_instance_id is None and request.version >= MEMBER_ID_REQUIRED_MIN_VERSION:
            # KIP-394: the member must come back with this id, so a lost answer leaves no ghost.
            loop = asyncio.get_running_loop()
            group.pending_members[member_id] = loop.call_later(
                request.session_timeout_ms / 1000, self._expire_pending, group, member_id
            )
            return JoinResult(ErrorCode.member_id_required, member_id)
        return await self._add_member_and_rebalance(group, member_id, request)

    async def _join_known_member(self, shard: Shard, group: ClassicGroup, request: JoinRequest) -> JoinResult:
        member_id = request.member_id
        if member_id in group.pending_members:
            group.pending_members.pop(member_id).cancel()
            return await self._add_member_and_rebalance(group, member_id, request)
        member = group.members.get(member_id)
        if member is None:
            return JoinResult(ErrorCode.unknown_member_id, member_id)
        instance_owner = group.member_for_instance(request.group_instance_id)
        if request.group_instance_id is not None and instance_owner != member_id:
            return JoinResult(ErrorCode.fenced_instance_id, member_id)
        if group.is_(GroupState.PREPARING_REBALANCE):
            return await self._update_and_wait(group, member, request)
        if group.is_(GroupState.COMPLETING_REBALANCE):
            if member.same_protocols(request.protocols):
                return self._join_result(group, member_id)
            return await self._update_and_rebalance(group, member, request, "member changed its protocols")
        # Stable (Empty cannot hold a known member).
        if group.leader == member_id or not member.same_protocols(request.protocols):
            return await self._update_and_rebalance(group, member, request, "leader or protocols changed")
        self._refresh_session(group, member)
        return self._join_result(group, member_id)

    async def _rejoin_static_member(
        self, shard: Shard, group: ClassicGroup, old_id: str, request: JoinRequest
    ) -> JoinResult:
        """A static member back with a new member id: the old id is fenced, its place kept."""
        new_id = f"{request.group_instance_id}-{uuid.uuid4()}"
        old = group.members[old_id]
        if old.join_waiter is not None and not old.join_waiter.done():
            old.join_waiter.set_result(JoinResult(ErrorCode.fenced_instance_id, old_id))
        if old.sync_waiter is not None and not old.sync_waiter.done():
            old.sync_waiter.set_result(SyncResult(ErrorCode.fenced_instance_id))
        old.join_waiter = old.sync_waiter = None
        member = group.replace_static(old_id, new_id)
        self._update_member(member, request)
        # Kafka's rule: no rebalance unless the group's protocol would change. A rejoining static
        # leader gets the members and skip_assignment (v9+); its SyncGroup in Stable changes nothing.
        if group.is_(GroupState.STABLE) and group.choose_protocol() == group.protocol:
            try:
                await shard.write([group_record(group)])
            except Exception as error:  # the old id stays fenced; the member will rejoin
                log.error("persisting static member of %s failed: %s", group.group_id, error)
                return JoinResult(ErrorCode.unknown_member_id, new_id)
            self._refresh_session(group, member)
            result = self._join_result(group, new_id)
            if group.leader == new_id:
                if request.version >= SKIP_ASSIGNMENT_MIN_VERSION:
                    result.skip_assignment = True
                else:  # Kafka names the old id, with no members, so no assignment is recomputed
                    result.leader, result.members = old_id, []
            return result
        if group.is_(GroupState.PREPARING_REBALANCE):
            return await self._wait_for_join(group, member)
        return await self._rebalance_and_wait(group, member, "static member rejoined with new protocols")

    async def _add_member_and_rebalance(self, group: ClassicGroup, member_id: str, request: JoinRequest) -> JoinResult:
        member = Member(
            member_id,
            request.group_instance_id,
            request.client_id,
            request.client_host,
            request.rebalance_timeout_ms,
            request.session_timeout_ms,
            request.protocol_type,
            request.protocols,
        )
        group.add(member)
        if group.is_(GroupState.PREPARING_REBALANCE) and group.initial_delay_deadline is not None:
            self._stretch_initial_delay(group)
        return await self._rebalance_and_wait(group, member, f"member {member_id} joined")

    async def _update_and_rebalance(
        self, group: ClassicGroup, member: Member, request: JoinRequest, reason: str
    ) -> JoinResult:
        self._update_member(member, request)
        return await self._rebalance_and_wait(group, member, reason)

    async def _update_and_wait(self, group: ClassicGroup, member: Member, request: JoinRequest) -> JoinResult:
        self._update_member(member, request)
        return await self._wait_for_join(group, member)

    @staticmethod
    def _update_member(member: Member, request: JoinRequest) -> None:
        member.protocols = request.protocols
        member.session_timeout_ms = request.session_timeout_ms
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
        member.client_id = request.client_id
        member.client_host = request.client_host

    async def _rebalance_and_wait(self, group: ClassicGroup, member: Member, reason: str) -> JoinResult:
        if not group.is_(GroupState.PREPARING_REBALANCE):
            self._prepare_rebalance(group, reason)
        return await self._wait_for_join(group, member)

    async def _wait_for_join(self, group: ClassicGroup, member: Member) -> JoinResult:
        waiter: asyncio.Future[JoinResult] = asyncio.get_running_loop().create_future()
        if member.join_waiter is not None and not member.join_waiter.done():
            # The member sent JoinGroup again before the first was answered (it timed out).
            member.join_waiter.set_result(JoinResult(ErrorCode.rebalance_in_progress, member.member_id))
        member.join_waiter = waiter
        self._cancel_session(member)  # a member waiting in a rebalance is alive by definition
        self._try_complete_join(group)
        # Shielded: if the client's connection goes, the member still counts as joined (as in
        # Kafka); it then misses SyncGroup and heartbeats, and its session expires.
        return await asyncio.shield(waiter)

    def _join_result(self, group: ClassicGroup, member_id: str) -> JoinResult:
        members = []
        if group.leader == member_id:
            members = [
                (m.member_id, m.group_instance_id, m.metadata_for(group.protocol)) for m in group.members.values()
            ]
        return JoinResult(
            ErrorCode.none,
            member_id,
            group.generation,
            group.protocol_type,
            group.protocol,
            group.leader or "",
            members,
        )

    # ---- rebalance ---------------------------------------------------------------------------

    def _prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        loop = asyncio.get_running_loop()
        if group.is_(GroupState.COMPLETING_REBALANCE):
            self._fail_syncs(group, ErrorCode.rebalance_in_progress)
        was_empty = group.is_(GroupState.EMPTY)
        group.move_to(GroupState.PREPARING_REBALANCE, now_ms())
        log.info("group %s rebalancing (generation %d): %s", group.group_id, group.generation, reason)
        if group.join_timer is not None:
            group.join_timer.cancel()
        if was_empty and self.config.group_initial_rebalance_delay_ms > 0:
            # Kafka's initial delay: wait for more members before the first generation, each
            # arrival stretching the wait by the delay, never past the rebalance timeout.
            delay = self.config.group_initial_rebalance_delay_ms / 1000
            group.initial_delay_deadline = loop.time() + max(group.max_rebalance_timeout_ms() / 1000, delay)
            group.join_timer = loop.call_later(delay, self._complete_join, group)
        else:
            group.initial_delay_deadline = None
            group.join_timer = loop.call_later(group.max_rebalance_timeout_ms() / 1000, self._complete_join, group)

    def _stretch_initial_delay(self, group: ClassicGroup) -> None:
        loop = asyncio.get_running_loop()
        assert group.initial_delay_deadline is not None
        delay = min(self.config.group_initial_rebalance_delay_ms / 1000, group.initial_delay_deadline - loop.time())
        if group.join_timer is not None:
            group.join_timer.cancel()
        group.join_timer = loop.call_later(max(delay, 0), self._complete_join, group)

    def _try_complete_join(self, group: ClassicGroup) -> None:
        if group.is_(GroupState.PREPARING_REBALANCE) and group.initial_delay_deadline is None and group.all_joined():
            self._complete_join(group)

    def _complete_join(self, group: ClassicGroup) -> None:
        if not group.is_(GroupState.PREPARING_REBALANCE):
            return
        if group.join_timer is not None:
            group.join_timer.cancel()
            group.join_timer = None
        group.initial_delay_deadline = None
        for member in [m for m in group.members.values() if not m.awaiting_join]:
            log.info("group %s: member %s did not rejoin in time, removed", group.group_id, member.member_id)
            group.remove(member.member_id)
        group.generation += 1
        if group.is_empty:
            group.protocol = None
            group.move_to(GroupState.EMPTY, now_ms())
            self._spawn(
                self._write_quietly(self.shard_for(group.group_id), [group_record(group)], f"group {group.group_id}")
            )
            return
        group.protocol = group.choose_protocol()
        group.move_to(GroupState.COMPLETING_REBALANCE, now_ms())
        log.info(
            "group %s generation %d: %d member(s), protocol %s",
            group.group_id,
            group.generation,
            len(group.members),
            group.protocol,
        )
        for member in group.members.values():
            assert member.join_waiter is not None
            member.join_waiter.set_result(self._join_result(group, member.member_id))
            member.join_waiter = None
            self._refresh_session(group, member)

    # ---- SyncGroup ---------------------------------------------------------------------------

    async def sync(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
    ) -> SyncResult:
        if not group_id:
            return SyncResult(ErrorCode.invalid_group_id)
        group = self.shard_for(group_id).groups.get(group_id)
        if group is None or member_id not in group.members:
            return SyncResult(ErrorCode.unknown_member_id)
        if instance_id is not None and group.member_for_instance(instance_id) != member_id:
            return SyncResult(ErrorCode.fenced_instance_id)
        if generation != group.generation:
            return SyncResult(ErrorCode.illegal_generation)
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
            protocol_name is not None and protocol_name != group.protocol
        ):
            return SyncResult(ErrorCode.inconsistent_group_protocol)
        member = group.members[member_id]
        if group.is_(GroupState.PREPARING_REBALANCE):
            return SyncResult(ErrorCode.rebalance_in_progress)
        if group.is_(GroupState.STABLE):
            self._refresh_session(group, member)
            return SyncResult(ErrorCode.none, group.protocol_type, group.protocol, member.assignment)
        waiter: asyncio.Future[SyncResult] = asyncio.get_running_loop().create_future()
        member.sync_waiter = waiter
        self._refresh_session(group, member)
        if group.leader == member_id:
            self._spawn(self._complete_sync(group, generation, assignments))
        return await asyncio.shield(waiter)

    async def _complete_sync(self, group: ClassicGroup, generation: int, assignments: dict[str, bytes]) -> None:
        """Stores the leader's assignment; once durable, the generation is Stable."""
        for member in group.members.values():
            member.assignment = assignments.get(member.member_id, b"")
        shard = self.shard_for(group.group_id)
        try:
            await shard.write([group_record(group)])
        except Exception as error:
            log.error("storing generation %d of %s failed: %s", generation, group.group_id, error)
            if group.is_(GroupState.COMPLETING_REBALANCE) and group.generation == generation:
                self._fail_syncs(group, ErrorCode.not_coordinator)
                self._prepare_rebalance(group, "storing the assignment failed")
            return
        if not (group.is_(GroupState.COMPLETING_REBALANCE) and group.generation == generation):
            return  # the group moved on while the record was written; those waiters were answered
        group.move_to(GroupState.STABLE, now_ms())
        for member in group.members.values():
            if member.sync_waiter is not None and not member.sync_waiter.done():
                member.sync_waiter.set_result(
                    SyncResult(ErrorCode.none, group.protocol_type, group.protocol, member.assignment)
                )
            member.sync_waiter = None

    def _fail_syncs(self, group: ClassicGroup, error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
            if member.sync_waiter is not None and not member.sync_waiter.done():
                member.sync_waiter.set_result(SyncResult(error))
            member.sync_waiter = None

    # ---- Heartbeat and LeaveGroup ------------------------------------------------------------

    def heartbeat(self, group_id: str, generation: int, member_id: str, instance_id: str | None) -> ErrorCode:
        if not group_id:
            return ErrorCode.invalid_group_id
        group = self.shard_for(group_id).groups.get(group_id)
        if group is None or group.is_(GroupState.EMPTY, GroupState.DEAD):
            return ErrorCode.unknown_member_id
        if instance_id is not None and group.member_for_instance(instance_id) not in (None, member_id):
            return ErrorCode.fenced_instance_id
        member = group.members.get(member_id)
        if member is None:
            return ErrorCode.unknown_member_id
        if generation != group.generation:
            return ErrorCode.illegal_generation
        self._refresh_session(group, member)
        if group.is_(GroupState.PREPARING_REBALANCE):
            return ErrorCode.rebalance_in_progress
        return ErrorCode.none

    def leave(self, group_id: str, members: Sequence[tuple[str, str | None]]) -> tuple[ErrorCode, list[ErrorCode]]:
        """Removes members (member id, group.instance.id); a group error, and one per member
        (none when the group error is not NONE)."""
        if not group_id:
            return ErrorCode.invalid_group_id, []
        group = self.shard_for(group_id).groups.get(group_id)
        if group is None:
            return ErrorCode.unknown_member_id, [ErrorCode.unknown_member_id] * len(members)
        errors = []
        for member_id, instance_id in members:
            errors.append(self._leave_one(group, member_id, instance_id))
        return ErrorCode.none, errors

    def _leave_one(self, group: ClassicGroup, member_id: str, instance_id: str | None) -> ErrorCode:
        if instance_id is not None:
            owner = group.member_for_instance(instance_id)
            if owner is None:
                return ErrorCode.unknown_member_id
            if member_id and member_id != owner:
                return ErrorCode.fenced_instance_id
            member_id = owner
        if member_id in group.pending_members:
            group.pending_members.pop(member_id).cancel()
            self._try_complete_join(group)
            return ErrorCode.none
        if member_id not in group.members:
            return ErrorCode.unknown_member_id
        self._remove_member(group, member_id, "left the group")
        return ErrorCode.none

    def _remove_member(self, group: ClassicGroup, member_id: str, reason: str) -> None:
        member = group.remove(member_id)
        if member is None:
            return
        log.info("group %s: member %s %s", group.group_id, member_id, reason)
        if member.join_waiter is not None and not member.join_waiter.done():
            member.join_waiter.set_result(JoinResult(ErrorCode.unknown_member_id, member_id))
        if group.is_(GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, f"member {member_id} {reason}")
        elif group.is_(GroupState.PREPARING_REBALANCE):
            if group.is_empty and group.initial_delay_deadline is None:
                self._complete_join(group)
            else:
                self._try_complete_join(group)

    # ---- sessions ----------------------------------------------------------------------------

    def _refresh_session(self, group: ClassicGroup, member: Member) -> None:
        self._cancel_session(member)
        member.session_timer = asyncio.get_running_loop().call_later(
            member.session_timeout_ms / 1000, self._expire_member, group, member.member_id
        )

    @staticmethod
    def _cancel_session(member: Member) -> None:
        if member.session_timer is not None:
            member.session_timer.cancel()
            member.session_timer = None

    def _expire_member(self, group: ClassicGroup, member_id: str) -> None:
        member = group.members.get(member_id)
        if member is None or member.awaiting_join or member.awaiting_sync:
            return  # a member waiting for the coordinator is alive (Kafka's shouldKeepAlive)
        self._remove_member(group, member_id, f"missed its session timeout ({member.session_timeout_ms} ms)")

    def _expire_pending(self, group: ClassicGroup, member_id: str) -> None:
        if group.pending_members.pop(member_id, None) is not None:
            self._try_complete_join(group)

    def _schedule_loaded_group(self, group: ClassicGroup) -> None:
        """Members loaded from the log must heartbeat within their session timeout, or go."""
        for member in group.members.values():
            self._refresh_session(group, member)

    @staticmethod
    def _cancel_timers(group: ClassicGroup) -> None:
        if group.join_timer is not None:
            group.join_timer.cancel()
        for timer in group.pending_members.values():
            timer.cancel()
        for member in group.members.values():
            if member.session_timer is not None:
                member.session_timer.cancel()

    # ---- offsets -----------------------------------------------------------------------------

    def commit_refusal(self, group: ClassicGroup | None, request: CommitRequest) -> ErrorCode | None:
        """Kafka's classic checks on an offset commit, in Kafka's order."""
        if group is None:
            return None if request.generation < 0 else ErrorCode.illegal_generation
        if group.is_(GroupState.DEAD):
            return ErrorCode.coordinator_not_available
        if request.generation < 0 and group.is_(GroupState.EMPTY):
            return None  # a commit from outside group management (assign(), admin tools)
        if group.is_(GroupState.COMPLETING_REBALANCE):
            return ErrorCode.rebalance_in_progress
        if (
            request.group_instance_id is not None
            and group.member_for_instance(request.group_instance_id) != request.member_id
        ):
            return ErrorCode.fenced_instance_id
        if request.member_id not in group.members:
            return ErrorCode.unknown_member_id
        if request.generation != group.generation:
            return ErrorCode.illegal_generation
        return None

    async def commit(
        self, request: CommitRequest, valid_partition: Callable[[str, int], bool]
    ) -> dict[tuple[str, int], ErrorCode]:
        shard = self.shard_for(request.group_id)
        group = shard.groups.get(request.group_id)
        refused = self.commit_refusal(group, request)
        if refused is not None:
            return {tp: refused for tp in request.offsets}
        if group is None:
            group = shard.groups[request.group_id] = ClassicGroup(request.group_id, now_ms())
        member = group.members.get(request.member_id)
        if member is not None:
            self._refresh_session(group, member)
        errors: dict[tuple[str, int], ErrorCode] = {}
        writes: list[KeyValue] = []
        timestamp = now_ms()
        for (topic, partition), (offset, leader_epoch, metadata, expire) in request.offsets.items():
            error = self._offset_refusal(topic, partition, metadata, valid_partition)
            errors[(topic, partition)] = error
            if error == ErrorCode.none:
                value = OffsetAndMetadata(offset, leader_epoch, metadata or "", timestamp, expire)
                writes.append(
                    (records.offset_key(OffsetKey(request.group_id, topic, partition)), records.offset_value(value))
                )
        if writes:
            try:
                await shard.write(writes)
            except Exception as error:
                log.error("offset commit for %s failed: %s", request.group_id, error)
                return {tp: (ErrorCode.not_coordinator if e == ErrorCode.none else e) for tp, e in errors.items()}
        return errors

    def _offset_refusal(
        self, topic: str, partition: int, metadata: str | None, valid_partition: Callable[[str, int], bool]
    ) -> ErrorCode:
        if metadata is not None and len(metadata.encode()) > self.config.offset_metadata_max_bytes:
            return ErrorCode.offset_metadata_too_large
        if not valid_partition(topic, partition):
            return ErrorCode.unknown_topic_or_partition
        return ErrorCode.none

    def fetch_offsets(
        self, group_id: str, partitions: Sequence[tuple[str, int]] | None
    ) -> dict[tuple[str, int], CommittedOffset]:
        """Committed offsets of a group: the ones asked for (-1 where none), or all of them."""
        group = self.shard_for(group_id).groups.get(group_id)
        committed = {} if group is None else group.offsets
        if partitions is None:
            return {tp: CommittedOffset(o.offset, o.leader_epoch, o.metadata) for tp, o in sorted(committed.items())}
        answer = {}
        for tp in partitions:
            stored = committed.get(tp)
            answer[tp] = (
                UNKNOWN_OFFSET
                if stored is None
                else CommittedOffset(stored.offset, stored.leader_epoch, stored.metadata)
            )
        return answer

    # ---- admin -------------------------------------------------------------------------------

    def describe(self, group_id: str) -> ClassicGroup | None:
        return self.shard_for(group_id).groups.get(group_id)

    def list_groups(self) -> list[ClassicGroup]:
        self.ensure_offsets_topic()
        return [
            g for shard in self.shards if not shard.loading for g in shard.groups.values() if not g.is_(GroupState.DEAD)
        ]

    async def delete_group(self, group_id: str) -> ErrorCode:
        if not group_id:
            return ErrorCode.invalid_group_id
        shard = self.shard_for(group_id)
        group = shard.groups.get(group_id)
        if group is None or group.is_(GroupState.DEAD):
            return ErrorCode.group_id_not_found
        if not group.is_(GroupState.EMPTY):
            return ErrorCode.non_empty_group
        tombstones = offset_tombstones(group_id, group.offsets)
        tombstones.append(group_tombstone(group_id))
        self._cancel_timers(group)
        group.move_to(GroupState.DEAD, now_ms())  # no joins while the tombstones are written
        try:
            await shard.write(tombstones)
        except Exception as error:
            log.error("deleting group %s failed: %s", group_id, error)
            group.move_to(GroupState.EMPTY, now_ms())
            return ErrorCode.not_coordinator
        return ErrorCode.none

    async def delete_offsets(
        self, group_id: str, partitions: Sequence[tuple[str, int]]
    ) -> tuple[ErrorCode, dict[tuple[str, int], ErrorCode]]:
        """OffsetDelete: drops committed offsets the group no longer consumes."""
        shard = self.shard_for(group_id)
        group = shard.groups.get(group_id)
        if group is None or group.is_(GroupState.DEAD):
            return ErrorCode.group_id_not_found, {}
        subscribed: set[str] = set()
        if not group.is_(GroupState.EMPTY):
            topics = group.subscribed_topics()
            if topics is None:
                return ErrorCode.non_empty_group, {}
            subscribed = topics
        errors = {
            tp: (ErrorCode.group_subscribed_to_topic if tp[0] in subscribed else ErrorCode.none) for tp in partitions
        }
        tombstones = offset_tombstones(
            group_id, [tp for tp, error in errors.items() if error == ErrorCode.none and tp in group.offsets]
        )
        if tombstones:
            try:
                await shard.write(tombstones)
            except Exception as error:
                log.error("deleting offsets of %s failed: %s", group_id, error)
                return ErrorCode.not_coordinator, {}
        return ErrorCode.none, errors

    def topic_deleted(self, topic: str) -> None:
        """Committed offsets of a deleted topic go too (tombstones), as in Kafka."""
        for shard in self.shards:
            if shard.loading:
                continue
            tombstones: list[KeyValue] = []
            for group in shard.groups.values():
                tombstones += offset_tombstones(group.group_id, [tp for tp in group.offsets if tp[0] == topic])
            if tombstones:
                self._spawn(self._write_quietly(shard, tombstones, f"offsets of deleted topic {topic}"))

    async def _write_quietly(self, shard: Shard, key_values: list[KeyValue], what: str) -> None:
        try:
            await shard.write(key_values)
        except Exception as error:
            log.error("writing %s failed: %s", what, error)

    # ---- offset retention --------------------------------------------------------------------

    @staticmethod
    def _expired_offsets(group: ClassicGroup, now: int, retention_ms: int) -> list[tuple[str, int]]:
        """Kafka's rules: in an Empty group every offset counts from when the group became empty
        (from its commit if the group never had members); in a Stable consumer group, offsets
        of topics no member subscribes to count from their commit (KIP-496); else none expire."""
        if group.is_(GroupState.EMPTY):
            since_empty = bool(group.protocol_type)
            still_consumed: set[str] = set()
        elif group.is_(GroupState.STABLE) and (subscribed := group.subscribed_topics()) is not None:
            since_empty = False
            still_consumed = subscribed
        else:
            return []
        expired = []
        for (topic, partition), stored in group.offsets.items():
            if topic in still_consumed:
                continue
            if stored.expire_timestamp_ms >= 0:
                deadline = stored.expire_timestamp_ms
            elif since_empty:
                deadline = group.state_timestamp_ms + retention_ms
            else:
                deadline = stored.commit_timestamp_ms + retention_ms
            if deadline <= now:
                expired.append((topic, partition))
        return expired

    async def expire_offsets(self) -> int:
        """Kafka's offsets.retention.minutes: offsets of a group that has been Empty for that
        long (or, for groups that never had members, not committed for that long) go, and so does
        a group left with none. Returns how many offsets were removed."""
        retention_ms = self.config.offsets_retention_minutes * 60_000
        now = now_ms()
        removed = 0
        for shard in self.shards:
            if shard.loading:
                continue
            for group in list(shard.groups.values()):
                removed += await self._expire_group(shard, group, now, retention_ms)
        return removed

    async def _expire_group(self, shard: Shard, group: ClassicGroup, now: int, retention_ms: int) -> int:
        expired = self._expired_offsets(group, now, retention_ms)
        tombstones = offset_tombstones(group.group_id, expired)
        if group.is_(GroupState.EMPTY) and len(expired) == len(group.offsets):
            tombstones.append(group_tombstone(group.group_id))
        if not tombstones:
            return 0
        try:
            await shard.write(tombstones)
        except Exception as error:
            log.error("expiring offsets of %s failed: %s", group.group_id, error)
            return 0
        if expired:
            log.info("group %s: %d offset(s) expired", group.group_id, len(expired))
        return len(expired)
