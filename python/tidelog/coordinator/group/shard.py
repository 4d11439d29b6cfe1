"""One partition of `__consumer_offsets`: its groups, their replay, and the group operations.

Durable state (committed offsets, each group's last completed generation, whether a group exists)
changes only in `replay`. Membership (joins, syncs, heartbeats, sessions) lives in memory, as in
Kafka: operations change it directly and return the records a generation, a commit or a
deletion must write (`CoordinatorResult`); the runtime answers once those are durable.

Error codes and their order follow Kafka's classic group coordinator, because clients act on
them: UNKNOWN_MEMBER_ID makes a consumer rejoin from scratch, ILLEGAL_GENERATION and
REBALANCE_IN_PROGRESS make it rejoin, FENCED_INSTANCE_ID is fatal to it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from kio.schema.errors import ErrorCode

from tidelog.config import BrokerConfig
from tidelog.coordinator.group import records
from tidelog.coordinator.group.group import ClassicGroup, GroupState, JoinResult, Member, SyncResult
from tidelog.coordinator.group.records import NO_LEADER_EPOCH, OffsetAndMetadata, OffsetKey
from tidelog.coordinator.runtime import CoordinatorResult, KeyValue, ShardContext

log = logging.getLogger(__name__)

NO_OFFSET = -1
MEMBER_ID_REQUIRED_MIN_VERSION = 4
# From JoinGroup v9 a static leader that rejoins unchanged is told to skip the assignment.
SKIP_ASSIGNMENT_MIN_VERSION = 9


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
class SyncRequest:
    group_id: str
    generation: int
    member_id: str
    group_instance_id: str | None
    protocol_type: str | None
    protocol_name: str | None
    assignments: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class CommitRequest:
    group_id: str
    generation: int
    member_id: str
    group_instance_id: str | None
    # (topic, partition) → (offset, leader epoch, metadata, expire timestamp or -1)
    offsets: dict[tuple[str, int], tuple[int, int, str | None, int]]


@dataclass(frozen=True, slots=True)
class TxnCommitRequest:
    """TxnOffsetCommit: offsets committed inside a producer's transaction."""

    transactional_id: str
    group_id: str
    producer_id: int
    producer_epoch: int
    generation: int
    member_id: str
    group_instance_id: str | None
    offsets: dict[tuple[str, int], tuple[int, int, str | None, int]]


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    offset: int
    leader_epoch: int
    metadata: str
    error: ErrorCode = ErrorCode.none


UNKNOWN_OFFSET = CommittedOffset(NO_OFFSET, NO_LEADER_EPOCH, "")

T = TypeVar("T")
Waiting = asyncio.Future


def answered(value: T) -> asyncio.Future[T]:
    """A future that already holds `value`: the answer of an operation that waits for nothing."""
    done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    done.set_result(value)
    return done


def offset_tombstones(group_id: str, partitions: Iterable[tuple[str, int]]) -> list[KeyValue]:
    return [(records.offset_key(OffsetKey(group_id, topic, partition)), None) for topic, partition in partitions]


def group_tombstone(group_id: str) -> KeyValue:
    return records.group_key(records.GroupKey(group_id)), None


class GroupShard:
    def __init__(self, context: ShardContext, config: BrokerConfig) -> None:
        self.context = context
        self.config = config
        self.loading = True
        self.groups: dict[str, ClassicGroup] = {}
        # Transactional offset commits not yet decided: producer id -> (group, topic, partition)
        # -> (record offset, the offset), applied by the COMMIT marker, dropped by ABORT.
        self.pending_txn: dict[int, dict[OffsetKey, tuple[int, OffsetAndMetadata]]] = {}
        # Where each visible offset's record is: a transaction's commit does not overwrite an
        # offset a plain commit wrote later in the log (Kafka's rule).
        self.committed_at: dict[OffsetKey, int] = {}

    # ---- the one way durable state changes ---------------------------------------------------

    def replay(self, offset: int, producer_id: int, producer_epoch: int, key: bytes, value: bytes | None) -> None:
        parsed = records.parse_key(bytes(key))
        if isinstance(parsed, records.OffsetKey):
            if producer_id != records.NO_PRODUCER_ID and value is not None:
                self.pending_txn.setdefault(producer_id, {})[parsed] = (offset, records.parse_offset_value(value))
                return
            group = self.groups.get(parsed.group)
            if value is None:
                self.committed_at.pop(parsed, None)
                if group is not None:
                    group.offsets.pop((parsed.topic, parsed.partition), None)
                return
            if group is None:
                group = self.groups[parsed.group] = ClassicGroup(parsed.group, self.context.now_ms())
            group.offsets[(parsed.topic, parsed.partition)] = records.parse_offset_value(value)
            self.committed_at[parsed] = offset
        elif isinstance(parsed, records.GroupKey):
            group = self.groups.get(parsed.group)
            if value is None:
                if group is not None:
                    group.move_to(GroupState.DEAD, self.context.now_ms())
                    del self.groups[parsed.group]
                return
            stored = records.parse_group_value(value)
            if group is None:
                group = self.groups[parsed.group] = ClassicGroup(parsed.group, self.context.now_ms())
            group.stored = stored
            if self.loading:
                group.load_stored(stored)
            # Live, the members in memory wrote this record and are already at or past it.

    def replay_end_transaction(self, offset: int, producer_id: int, producer_epoch: int, committed: bool) -> None:
        """The producer's transaction ended: its offsets become visible (COMMIT) or go (ABORT)."""
        pending = self.pending_txn.pop(producer_id, None)
        if not pending or not committed:
            return
        for key, (record_offset, value) in pending.items():
            if self.committed_at.get(key, -1) > record_offset:
                continue  # a plain commit written after this one wins
            group = self.groups.get(key.group)
            if group is None:
                group = self.groups[key.group] = ClassicGroup(key.group, self.context.now_ms())
            group.offsets[(key.topic, key.partition)] = value
            self.committed_at[key] = record_offset

    def has_pending_offset(self, group_id: str, topic: str, partition: int) -> bool:
        key = OffsetKey(group_id, topic, partition)
        return any(key in pending for pending in self.pending_txn.values())

    def on_loaded(self) -> None:
        """Members loaded from the log must heartbeat within their session timeout, or go."""
        self.loading = False
        for group in self.groups.values():
            for member in group.members.values():
                self._refresh_session(group, member)

    def on_unloaded(self) -> None:
        """Members waiting get NOT_COORDINATOR and find the coordinator again."""
        for group in self.groups.values():
            for member in group.members.values():
                if member.join_waiter is not None and not member.join_waiter.done():
                    member.join_waiter.set_result(JoinResult(ErrorCode.not_coordinator, member.member_id))
            self._fail_syncs(group, ErrorCode.not_coordinator)
            group.move_to(GroupState.DEAD, self.context.now_ms())
        self.groups.clear()

    def group_record(self, group: ClassicGroup) -> KeyValue:
        """The GroupMetadata record of the group's current generation."""
        stored = group.to_stored(self.context.now_ms())
        return records.group_key(records.GroupKey(group.group_id)), records.group_value(stored)

    # ---- JoinGroup ---------------------------------------------------------------------------

    def join(self, request: JoinRequest) -> CoordinatorResult[Waiting[JoinResult]]:
        """The request passed the coordinator's checks (`GroupCoordinator.join_refusal`)."""
        group = self.groups.get(request.group_id)
        if group is None:
            if request.member_id:
                return self._join_answer(JoinResult(ErrorCode.unknown_member_id, request.member_id))
            group = self.groups[request.group_id] = ClassicGroup(request.group_id, self.context.now_ms())
        if group.is_(GroupState.DEAD):
            return self._join_answer(JoinResult(ErrorCode.coordinator_not_available, request.member_id))
        if not group.supports(request.protocol_type, request.protocols):
            return self._join_answer(JoinResult(ErrorCode.inconsistent_group_protocol, request.member_id))
        if not request.member_id:
            return self._join_new_member(group, request)
        return self._join_answer(self._join_known_member(group, request))

    @staticmethod
    def _join_answer(
        result: JoinResult | Waiting[JoinResult], records_: Sequence[KeyValue] = ()
    ) -> CoordinatorResult[Waiting[JoinResult]]:
        waiter = result if isinstance(result, asyncio.Future) else answered(result)
        return CoordinatorResult(records_, waiter)

    def _join_new_member(self, group: ClassicGroup, request: JoinRequest) -> CoordinatorResult[Waiting[JoinResult]]:
        known = group.member_for_instance(request.group_instance_id)
        if known is not None:
            return self._rejoin_static_member(group, known, request)
        if len(group.members) + len(group.pending_members) >= self.config.group_max_size:
            return self._join_answer(JoinResult(ErrorCode.group_max_size_reached, ""))
        prefix = request.group_instance_id or request.client_id
        member_id = f"{prefix}-{uuid.uuid4()}"
        if request.group_instance_id is None and request.version >= MEMBER_ID_REQUIRED_MIN_VERSION:
            # KIP-394: the member must come back with this id, so a lost answer leaves no ghost.
            group.pending_members[member_id] = self.context.call_later(
                request.session_timeout_ms / 1000, self._expire_pending, group, member_id
            )
            return self._join_answer(JoinResult(ErrorCode.member_id_required, member_id))
        return self._join_answer(self._add_member_and_rebalance(group, member_id, request))

    def _join_known_member(self, group: ClassicGroup, request: JoinRequest) -> JoinResult | Waiting[JoinResult]:
        member_id = request.member_id
        if member_id in group.pending_members:
            group.pending_members.pop(member_id).cancel()
            return self._add_member_and_rebalance(group, member_id, request)
        member = group.members.get(member_id)
        if member is None:
            return JoinResult(ErrorCode.unknown_member_id, member_id)
        instance_owner = group.member_for_instance(request.group_instance_id)
        if request.group_instance_id is not None and instance_owner != member_id:
            return JoinResult(ErrorCode.fenced_instance_id, member_id)
        if group.is_(GroupState.PREPARING_REBALANCE):
            self._update_member(member, request)
            return self._wait_for_join(group, member)
        if group.is_(GroupState.COMPLETING_REBALANCE):
            if member.same_protocols(request.protocols):
                return self._join_result(group, member_id)
            self._update_member(member, request)
            return self._rebalance_and_wait(group, member, "member changed its protocols")
        # Stable (Empty cannot hold a known member).
        if group.leader == member_id or not member.same_protocols(request.protocols):
            self._update_member(member, request)
            return self._rebalance_and_wait(group, member, "leader or protocols changed")
        self._refresh_session(group, member)
        return self._join_result(group, member_id)

    def _rejoin_static_member(
        self, group: ClassicGroup, old_id: str, request: JoinRequest
    ) -> CoordinatorResult[Waiting[JoinResult]]:
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
            result = self._join_result(group, new_id)
            if group.leader == new_id:
                if request.version >= SKIP_ASSIGNMENT_MIN_VERSION:
                    result.skip_assignment = True
                else:  # Kafka names the old id, with no members, so no assignment is recomputed
                    result.leader, result.members = old_id, []

            def failed(error: BaseException) -> Waiting[JoinResult]:
                # The old id stays fenced; the member will rejoin.
                log.error("persisting static member of %s failed: %s", group.group_id, error)
                return answered(JoinResult(ErrorCode.unknown_member_id, new_id))

            return CoordinatorResult(
                [self.group_record(group)],
                answered(result),
                on_committed=lambda: self._refresh_session(group, member),
                on_failed=failed,
            )
        if group.is_(GroupState.PREPARING_REBALANCE):
            return self._join_answer(self._wait_for_join(group, member))
        return self._join_answer(self._rebalance_and_wait(group, member, "static member rejoined with new protocols"))

    def _add_member_and_rebalance(
        self, group: ClassicGroup, member_id: str, request: JoinRequest
    ) -> Waiting[JoinResult]:
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
        return self._rebalance_and_wait(group, member, f"member {member_id} joined")

    @staticmethod
    def _update_member(member: Member, request: JoinRequest) -> None:
        member.protocols = request.protocols
        member.session_timeout_ms = request.session_timeout_ms
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
        member.client_id = request.client_id
        member.client_host = request.client_host

    def _rebalance_and_wait(self, group: ClassicGroup, member: Member, reason: str) -> Waiting[JoinResult]:
        if not group.is_(GroupState.PREPARING_REBALANCE):
            self._prepare_rebalance(group, reason)
        return self._wait_for_join(group, member)

    def _wait_for_join(self, group: ClassicGroup, member: Member) -> Waiting[JoinResult]:
        waiter: Waiting[JoinResult] = asyncio.get_running_loop().create_future()
        if member.join_waiter is not None and not member.join_waiter.done():
            # The member sent JoinGroup again before the first was answered (it timed out).
            member.join_waiter.set_result(JoinResult(ErrorCode.rebalance_in_progress, member.member_id))
        member.join_waiter = waiter
        self._cancel_session(member)  # a member waiting in a rebalance is alive by definition
        self._try_complete_join(group)
        return waiter

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
        if group.is_(GroupState.COMPLETING_REBALANCE):
            self._fail_syncs(group, ErrorCode.rebalance_in_progress)
        was_empty = group.is_(GroupState.EMPTY)
        group.move_to(GroupState.PREPARING_REBALANCE, self.context.now_ms())
        log.info("group %s rebalancing (generation %d): %s", group.group_id, group.generation, reason)
        if group.join_timer is not None:
            group.join_timer.cancel()
        if was_empty and self.config.group_initial_rebalance_delay_ms > 0:
            # Kafka's initial delay: wait for more members before the first generation, each
            # arrival stretching the wait by the delay, never past the rebalance timeout.
            delay = self.config.group_initial_rebalance_delay_ms / 1000
            loop_time = asyncio.get_running_loop().time()
            group.initial_delay_deadline = loop_time + max(group.max_rebalance_timeout_ms() / 1000, delay)
            group.join_timer = self.context.call_later(delay, self._complete_join, group)
        else:
            group.initial_delay_deadline = None
            timeout_s = group.max_rebalance_timeout_ms() / 1000
            group.join_timer = self.context.call_later(timeout_s, self._complete_join, group)

    def _stretch_initial_delay(self, group: ClassicGroup) -> None:
        assert group.initial_delay_deadline is not None
        left = group.initial_delay_deadline - asyncio.get_running_loop().time()
        delay = min(self.config.group_initial_rebalance_delay_ms / 1000, left)
        if group.join_timer is not None:
            group.join_timer.cancel()
        group.join_timer = self.context.call_later(max(delay, 0), self._complete_join, group)

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
            group.move_to(GroupState.EMPTY, self.context.now_ms())
            self.context.write(CoordinatorResult([self.group_record(group)], None), f"group {group.group_id}")
            return
        group.protocol = group.choose_protocol()
        group.move_to(GroupState.COMPLETING_REBALANCE, self.context.now_ms())
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

    def sync(self, request: SyncRequest) -> CoordinatorResult[Waiting[SyncResult]]:
        refused = self._sync_refusal(request)
        if refused is not None:
            return CoordinatorResult((), answered(refused))
        group = self.groups[request.group_id]
        member = group.members[request.member_id]
        if group.is_(GroupState.STABLE):
            self._refresh_session(group, member)
            stable = SyncResult(ErrorCode.none, group.protocol_type, group.protocol, member.assignment)
            return CoordinatorResult((), answered(stable))
        waiter: Waiting[SyncResult] = asyncio.get_running_loop().create_future()
        member.sync_waiter = waiter
        self._refresh_session(group, member)
        if group.leader != request.member_id:
            return CoordinatorResult((), waiter)
        # The leader's assignment: stored first; once durable, the generation is Stable.
        for each in group.members.values():
            each.assignment = request.assignments.get(each.member_id, b"")
        generation = request.generation

        def failed(error: BaseException) -> Waiting[SyncResult]:
            log.error("storing generation %d of %s failed: %s", generation, group.group_id, error)
            if group.is_(GroupState.COMPLETING_REBALANCE) and group.generation == generation:
                self._fail_syncs(group, ErrorCode.not_coordinator)
                self._prepare_rebalance(group, "storing the assignment failed")
            return waiter

        return CoordinatorResult(
            [self.group_record(group)],
            waiter,
            on_committed=lambda: self._complete_sync(group, generation),
            on_failed=failed,
        )

    def _sync_refusal(self, request: SyncRequest) -> SyncResult | None:
        group = self.groups.get(request.group_id)
        if group is None or request.member_id not in group.members:
            return SyncResult(ErrorCode.unknown_member_id)
        owner = group.member_for_instance(request.group_instance_id)
        if request.group_instance_id is not None and owner != request.member_id:
            return SyncResult(ErrorCode.fenced_instance_id)
        if request.generation != group.generation:
            return SyncResult(ErrorCode.illegal_generation)
        if (request.protocol_type is not None and request.protocol_type != group.protocol_type) or (
            request.protocol_name is not None and request.protocol_name != group.protocol
        ):
            return SyncResult(ErrorCode.inconsistent_group_protocol)
        if group.is_(GroupState.PREPARING_REBALANCE):
            return SyncResult(ErrorCode.rebalance_in_progress)
        return None

    def _complete_sync(self, group: ClassicGroup, generation: int) -> None:
        if not (group.is_(GroupState.COMPLETING_REBALANCE) and group.generation == generation):
            return  # the group moved on while the record was written; those waiters were answered
        group.move_to(GroupState.STABLE, self.context.now_ms())
        for member in group.members.values():
            if member.sync_waiter is not None and not member.sync_waiter.done():
                result = SyncResult(ErrorCode.none, group.protocol_type, group.protocol, member.assignment)
                member.sync_waiter.set_result(result)
            member.sync_waiter = None

    def _fail_syncs(self, group: ClassicGroup, error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
            if member.sync_waiter is not None and not member.sync_waiter.done():
                member.sync_waiter.set_result(SyncResult(error))
            member.sync_waiter = None

    # ---- Heartbeat and LeaveGroup ------------------------------------------------------------

    def heartbeat(self, group_id: str, generation: int, member_id: str, instance_id: str | None) -> ErrorCode:
        group = self.groups.get(group_id)
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
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.unknown_member_id, [ErrorCode.unknown_member_id] * len(members)
        return ErrorCode.none, [self._leave_one(group, member_id, instance_id) for member_id, instance_id in members]

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
        member.session_timer = self.context.call_later(
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

    @staticmethod
    def commit_refusal(group: ClassicGroup | None, request: CommitRequest) -> ErrorCode | None:
        """Kafka's classic checks on an offset commit, in Kafka's order."""
        if group is None:
            return None if request.generation < 0 else ErrorCode.illegal_generation
        if group.is_(GroupState.DEAD):
            return ErrorCode.coordinator_not_available
        if request.generation < 0 and group.is_(GroupState.EMPTY):
            return None  # a commit from outside group management (assign(), admin tools)
        if group.is_(GroupState.COMPLETING_REBALANCE):
            return ErrorCode.rebalance_in_progress
        owner = group.member_for_instance(request.group_instance_id)
        if request.group_instance_id is not None and owner != request.member_id:
            return ErrorCode.fenced_instance_id
        if request.member_id not in group.members:
            return ErrorCode.unknown_member_id
        if request.generation != group.generation:
            return ErrorCode.illegal_generation
        return None

    def commit(
        self, request: CommitRequest, valid_partition: Callable[[str, int], bool]
    ) -> CoordinatorResult[dict[tuple[str, int], ErrorCode]]:
        group = self.groups.get(request.group_id)
        refused = self.commit_refusal(group, request)
        if refused is not None:
            return CoordinatorResult((), dict.fromkeys(request.offsets, refused))
        if group is None:
            group = self.groups[request.group_id] = ClassicGroup(request.group_id, self.context.now_ms())
        member = group.members.get(request.member_id)
        if member is not None:
            self._refresh_session(group, member)
        return self._offset_writes(request.group_id, request.offsets, valid_partition, "offset commit")

    @staticmethod
    def txn_commit_refusal(group: ClassicGroup | None, request: TxnCommitRequest) -> ErrorCode | None:
        """Kafka's checks on a TxnOffsetCommit (v3+ carries the member: KIP-447 fences a zombie
        consumer's producer by generation)."""
        if group is None:
            return None if request.generation < 0 else ErrorCode.illegal_generation
        if group.is_(GroupState.DEAD):
            return ErrorCode.coordinator_not_available
        owner = group.member_for_instance(request.group_instance_id)
        if request.group_instance_id is not None and owner is not None and owner != request.member_id:
            return ErrorCode.fenced_instance_id
        if request.member_id and request.member_id not in group.members:
            return ErrorCode.unknown_member_id
        if request.generation >= 0 and request.generation != group.generation:
            return ErrorCode.illegal_generation
        return None

    def txn_commit(
        self, request: TxnCommitRequest, valid_partition: Callable[[str, int], bool]
    ) -> CoordinatorResult[dict[tuple[str, int], ErrorCode]]:
        """Writes the offsets as the producer's transactional records: pending until its marker."""
        group = self.groups.get(request.group_id)
        refused = self.txn_commit_refusal(group, request)
        if refused is not None:
            return CoordinatorResult((), dict.fromkeys(request.offsets, refused))
        result = self._offset_writes(request.group_id, request.offsets, valid_partition, "transactional offset commit")
        result.producer = (request.producer_id, request.producer_epoch)
        return result

    def _offset_writes(
        self,
        group_id: str,
        offsets: dict[tuple[str, int], tuple[int, int, str | None, int]],
        valid_partition: Callable[[str, int], bool],
        what: str,
    ) -> CoordinatorResult[dict[tuple[str, int], ErrorCode]]:
        """The records of a commit that passed the group's checks: one per acceptable offset,
        each partition answered (NOT_COORDINATOR for all if the write fails)."""
        errors: dict[tuple[str, int], ErrorCode] = {}
        writes: list[KeyValue] = []
        timestamp = self.context.now_ms()
        for (topic, partition), (offset, leader_epoch, metadata, expire) in offsets.items():
            error = self._offset_refusal(topic, partition, metadata, valid_partition)
            errors[(topic, partition)] = error
            if error == ErrorCode.none:
                value = OffsetAndMetadata(offset, leader_epoch, metadata or "", timestamp, expire)
                key = records.offset_key(OffsetKey(group_id, topic, partition))
                writes.append((key, records.offset_value(value)))

        def failed(error: BaseException) -> dict[tuple[str, int], ErrorCode]:
            log.error("%s for %s failed: %s", what, group_id, error)
            return {tp: (ErrorCode.not_coordinator if e == ErrorCode.none else e) for tp, e in errors.items()}

        return CoordinatorResult(writes, errors, on_failed=failed)

    def _offset_refusal(
        self, topic: str, partition: int, metadata: str | None, valid_partition: Callable[[str, int], bool]
    ) -> ErrorCode:
        if metadata is not None and len(metadata.encode()) > self.config.offset_metadata_max_bytes:
            return ErrorCode.offset_metadata_too_large
        if not valid_partition(topic, partition):
            return ErrorCode.unknown_topic_or_partition
        return ErrorCode.none

    def fetch_offsets(
        self, group_id: str, partitions: Sequence[tuple[str, int]] | None, require_stable: bool = False
    ) -> dict[tuple[str, int], CommittedOffset]:
        """Committed offsets of a group: the ones asked for (-1 where none), or all of them.
        With `require_stable`, a partition a transaction holds an offset for is answered
        UNSTABLE_OFFSET_COMMIT (the client retries)."""
        group = self.groups.get(group_id)
        committed = {} if group is None else group.offsets
        if partitions is None:
            partitions = sorted(committed)
        answer = {}
        for tp in partitions:
            if require_stable and self.has_pending_offset(group_id, *tp):
                answer[tp] = CommittedOffset(NO_OFFSET, NO_LEADER_EPOCH, "", ErrorCode.unstable_offset_commit)
                continue
            stored = committed.get(tp)
            answer[tp] = (
                UNKNOWN_OFFSET
                if stored is None
                else CommittedOffset(stored.offset, stored.leader_epoch, stored.metadata)
            )
        return answer

    # ---- admin -------------------------------------------------------------------------------

    def describe(self, group_id: str) -> ClassicGroup | None:
        return self.groups.get(group_id)

    def list_groups(self) -> list[ClassicGroup]:
        return [g for g in self.groups.values() if not g.is_(GroupState.DEAD)]

    def delete_group(self, group_id: str) -> CoordinatorResult[ErrorCode]:
        group = self.groups.get(group_id)
        if group is None or group.is_(GroupState.DEAD):
            return CoordinatorResult((), ErrorCode.group_id_not_found)
        if not group.is_(GroupState.EMPTY):
            return CoordinatorResult((), ErrorCode.non_empty_group)
        tombstones = offset_tombstones(group_id, group.offsets)
        tombstones.append(group_tombstone(group_id))
        self._cancel_timers(group)
        group.move_to(GroupState.DEAD, self.context.now_ms())  # no joins while the tombstones are written

        def failed(error: BaseException) -> ErrorCode:
            log.error("deleting group %s failed: %s", group_id, error)
            group.move_to(GroupState.EMPTY, self.context.now_ms())
            return ErrorCode.not_coordinator

        return CoordinatorResult(tombstones, ErrorCode.none, on_failed=failed)

    def delete_offsets(
        self, group_id: str, partitions: Sequence[tuple[str, int]]
    ) -> CoordinatorResult[tuple[ErrorCode, dict[tuple[str, int], ErrorCode]]]:
        """OffsetDelete: drops committed offsets the group no longer consumes."""
        group = self.groups.get(group_id)
        if group is None or group.is_(GroupState.DEAD):
            return CoordinatorResult((), (ErrorCode.group_id_not_found, {}))
        subscribed: set[str] = set()
        if not group.is_(GroupState.EMPTY):
            topics = group.subscribed_topics()
            if topics is None:
                return CoordinatorResult((), (ErrorCode.non_empty_group, {}))
            subscribed = topics
        errors = {
            tp: (ErrorCode.group_subscribed_to_topic if tp[0] in subscribed else ErrorCode.none) for tp in partitions
        }
        doomed = [tp for tp, error in errors.items() if error == ErrorCode.none and tp in group.offsets]

        def failed(error: BaseException) -> tuple[ErrorCode, dict[tuple[str, int], ErrorCode]]:
            log.error("deleting offsets of %s failed: %s", group_id, error)
            return ErrorCode.not_coordinator, {}

        return CoordinatorResult(offset_tombstones(group_id, doomed), (ErrorCode.none, errors), on_failed=failed)

    def offsets_of_deleted_topic(self, topic: str) -> CoordinatorResult[None]:
        """Committed offsets of a deleted topic go too (tombstones), as in Kafka."""
        tombstones: list[KeyValue] = []
        for group in self.groups.values():
            tombstones += offset_tombstones(group.group_id, [tp for tp in group.offsets if tp[0] == topic])
        return CoordinatorResult(tombstones, None)

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

    def expire_offsets(self, now: int, retention_ms: int) -> CoordinatorResult[int]:
        """Kafka's offsets.retention.minutes: offsets of a group that has been Empty for that
        long (or, for groups that never had members, not committed for that long) go, and so does
        a group left with none. One write for the whole shard; answers how many offsets went."""
        tombstones: list[KeyValue] = []
        expired_by_group: dict[str, int] = {}
        for group in self.groups.values():
            expired = self._expired_offsets(group, now, retention_ms)
            tombstones += offset_tombstones(group.group_id, expired)
            if group.is_(GroupState.EMPTY) and len(expired) == len(group.offsets):
                tombstones.append(group_tombstone(group.group_id))
            if expired:
                expired_by_group[group.group_id] = len(expired)

        def committed() -> None:
            for group_id, count in expired_by_group.items():
                log.info("group %s: %d offset(s) expired", group_id, count)

        def failed(error: BaseException) -> int:
            log.error("expiring offsets in %s failed: %s", self.context.name, error)
            return 0

        return CoordinatorResult(tombstones, sum(expired_by_group.values()), committed, failed)
