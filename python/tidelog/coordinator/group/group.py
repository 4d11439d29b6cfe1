"""A classic consumer group: its members, generation and state, without I/O.

States and their moves are Kafka's (classic protocol):

    Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
      ▲                  ▲      │ nobody left                       │ leader's SyncGroup durable
      │                  │      ▼                                   ▼
      └────── last member gone ◀───── Empty              Stable ──join, leave, expiry──▶ PreparingRebalance

Membership lives in memory, as in Kafka; what survives a restart is the GroupMetadata record
written when a generation completes (see `records.StoredGroup`). The coordinator drives the
moves; this module holds the state and the rules that need no clock or log.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import struct
from dataclasses import dataclass, field

from tidelog.coordinator.group.records import OffsetAndMetadata, StoredGroup, StoredMember
from tidelog.coordinator.runtime import Timer

CONSUMER_PROTOCOL_TYPE = "consumer"
NO_GENERATION = -1
INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")


class GroupState(enum.Enum):
    # The names are what Kafka shows in DescribeGroups and ListGroups.
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(slots=True)
class JoinResult:
    error: int
    member_id: str
    generation: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    members: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    skip_assignment: bool = False


@dataclass(slots=True)
class SyncResult:
    error: int
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass(slots=True)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    join_waiter: asyncio.Future[JoinResult] | None = None
    sync_waiter: asyncio.Future[SyncResult] | None = None
    session_timer: Timer | None = None

    def metadata_for(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def same_protocols(self, protocols: list[tuple[str, bytes]]) -> bool:
        return self.protocols == protocols

    @property
    def awaiting_join(self) -> bool:
        return self.join_waiter is not None and not self.join_waiter.done()

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_waiter is not None and not self.sync_waiter.done()

    def stored(self, protocol: str | None) -> StoredMember:
        return StoredMember(
            self.member_id,
            self.group_instance_id,
            self.client_id,
            self.client_host,
            self.rebalance_timeout_ms,
            self.session_timeout_ms,
            self.metadata_for(protocol),
            self.assignment,
        )


class ClassicGroup:
    def __init__(self, group_id: str, now_ms: int) -> None:
        self.group_id = group_id
        self.state = GroupState.EMPTY
        self.state_timestamp_ms = now_ms
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol: str | None = None
        self.leader: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}  # group.instance.id → member id
        # Member ids handed out with MEMBER_ID_REQUIRED (JoinGroup v4+), not yet joined.
        self.pending_members: dict[str, Timer] = {}
        # The durable state, changed only by replaying records: committed offsets and the
        # last stored generation.
        self.offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
        self.stored: StoredGroup | None = None
        self.join_timer: Timer | None = None
        # When the initial rebalance delay may still be stretched, and up to when.
        self.initial_delay_deadline: float | None = None

    # ---- state --------------------------------------------------------------------------

    def move_to(self, state: GroupState, now_ms: int) -> None:
        self.state = state
        self.state_timestamp_ms = now_ms

    def is_(self, *states: GroupState) -> bool:
        return self.state in states

    @property
    def is_empty(self) -> bool:
        return not self.members

    # ---- members ------------------------------------------------------------------------

    def add(self, member: Member) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        self.members[member.member_id] = member
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader is None:
            self.leader = member.member_id

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        if member.session_timer is not None:
            member.session_timer.cancel()
        if member.group_instance_id is not None and self.static_members.get(member.group_instance_id) == member_id:
            del self.static_members[member.group_instance_id]
        if self.leader == member_id:
            self.leader = next(iter(self.members), None)
        return member

    def replace_static(self, old_id: str, new_id: str) -> Member:
        """A static member rejoined with an empty member id: it keeps its place under a new id."""
        member = self.members.pop(old_id)
        member.member_id = new_id
        self.members[new_id] = member
        assert member.group_instance_id is not None
        self.static_members[member.group_instance_id] = new_id
        if self.leader == old_id:
            self.leader = new_id
        return member

    def member_for_instance(self, instance_id: str | None) -> str | None:
        return None if instance_id is None else self.static_members.get(instance_id)

    def supports(self, protocol_type: str, protocols: list[tuple[str, bytes]]) -> bool:
        """Whether a joining member fits: same protocol type and a protocol every member has."""
        if not protocol_type or not protocols:
            return False
        if not self.members:
            return True
        if protocol_type != self.protocol_type:
            return False
        offered = {name for name, _ in protocols}
        return bool(offered & self.candidate_protocols())

    def candidate_protocols(self) -> set[str]:
        names: set[str] | None = None
        for member in self.members.values():
            own = {name for name, _ in member.protocols}
            names = own if names is None else names & own
        return names or set()

    def choose_protocol(self) -> str:
        """Kafka's vote: each member votes for its most preferred candidate; most votes wins."""
        candidates = self.candidate_protocols()
        votes: collections.Counter[str] = collections.Counter()
        for member in self.members.values():
            votes[next(name for name, _ in member.protocols if name in candidates)] += 1
        return max(votes, key=lambda name: (votes[name], -sorted(candidates).index(name)))

    def all_joined(self) -> bool:
        return not self.pending_members and all(m.awaiting_join for m in self.members.values())

    def max_rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to, read from the consumer protocol; None if unknown."""
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE or self.protocol is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            parsed = consumer_subscription_topics(member.metadata_for(self.protocol))
            if parsed is None:
                return None
            topics |= parsed
        return topics

    # ---- persistence --------------------------------------------------------------------

    def to_stored(self, now_ms: int) -> StoredGroup:
        members = tuple(m.stored(self.protocol) for m in self.members.values())
        return StoredGroup(self.protocol_type or "", self.generation, self.protocol, self.leader, now_ms, members)

    def load_stored(self, stored: StoredGroup) -> None:
        """State from a GroupMetadata record at load: Stable with its members, or Empty."""
        self.generation = stored.generation
        self.protocol_type = stored.protocol_type
        self.protocol = stored.protocol
        self.leader = stored.leader
        self.members.clear()
        self.static_members.clear()
        for stored_member in stored.members:
            member = Member(
                stored_member.member_id,
                stored_member.group_instance_id,
                stored_member.client_id,
                stored_member.client_host,
                stored_member.rebalance_timeout_ms,
                stored_member.session_timeout_ms,
                stored.protocol_type,
                [(stored.protocol or "", stored_member.subscription)],
                stored_member.assignment,
            )
            self.members[member.member_id] = member
            if member.group_instance_id is not None:
                self.static_members[member.group_instance_id] = member.member_id
        self.state = GroupState.STABLE if self.members else GroupState.EMPTY
        if stored.state_timestamp_ms >= 0:
            self.state_timestamp_ms = stored.state_timestamp_ms


def consumer_subscription_topics(metadata: bytes) -> set[str] | None:
    """Topics in a ConsumerProtocolSubscription (int16 version, then an array of strings)."""
    try:
        at = 2
        (count,) = INT32.unpack_from(metadata, at)
        at += 4
        topics = set()
        for _ in range(count):
            (length,) = INT16.unpack_from(metadata, at)
            at += 2
            topics.add(metadata[at : at + length].decode())
            at += length
        return topics
    except (struct.error, UnicodeDecodeError):
        return None
