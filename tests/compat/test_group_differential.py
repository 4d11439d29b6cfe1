"""Consumer-group scenarios over raw requests whose answers must match Apache Kafka's: the
classic rebalance protocol step by step, offset commits and fetches, and the admin APIs, with
the error codes clients act on. Member ids differ between brokers; everything else is compared.
"""

from __future__ import annotations

import datetime
import itertools
import struct
import time
from typing import Any

import pytest
from kio.schema.consumer_group_describe.v0.request import ConsumerGroupDescribeRequest
from kio.schema.delete_groups.v2.request import DeleteGroupsRequest
from kio.schema.describe_groups.v5.request import DescribeGroupsRequest
from kio.schema.errors import ErrorCode
from kio.schema.find_coordinator.v3.request import FindCoordinatorRequest as FindCoordinatorV3
from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest as FindCoordinatorV4
from kio.schema.heartbeat.v3.request import HeartbeatRequest
from kio.schema.join_group.v5.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.leave_group.v3.request import LeaveGroupRequest, MemberIdentity
from kio.schema.list_groups.v4.request import ListGroupsRequest
from kio.schema.offset_commit.v7.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.schema.offset_delete.v0.request import (
    OffsetDeleteRequest,
    OffsetDeleteRequestPartition,
    OffsetDeleteRequestTopic,
)
from kio.schema.offset_fetch.v7.request import OffsetFetchRequest, OffsetFetchRequestTopic
from kio.schema.sync_group.v3.request import SyncGroupRequest, SyncGroupRequestAssignment

from tests.compat.test_differential import create_topic
from tests.server.wire_client import WireClient

groups = (f"compat-group-{i}" for i in itertools.count())
SESSION = datetime.timedelta(seconds=10)
REBALANCE = datetime.timedelta(seconds=10)
COORDINATOR_WAIT_S = 30
JOIN, SYNC, HEARTBEAT, LEAVE = 11, 14, 12, 13
OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE, LIST, DELETE = 8, 9, 15, 16, 42


def subscription(*topics: str) -> bytes:
    """ConsumerProtocolSubscription v0: version, topics, null user data."""
    body = struct.pack(">hi", 0, len(topics))
    for topic in topics:
        body += struct.pack(">h", len(topic)) + topic.encode()
    return body + struct.pack(">i", -1)


def assignment(topic: str, *partitions: int) -> bytes:
    """ConsumerProtocolAssignment v0: version, [topic, partitions], null user data."""
    body = struct.pack(">hih", 0, 1, len(topic)) + topic.encode() + struct.pack(">i", len(partitions))
    body += b"".join(struct.pack(">i", p) for p in partitions)
    return body + struct.pack(">i", -1)


def wait_for_coordinator(client: WireClient, group: str) -> None:
    """Kafka answers COORDINATOR_NOT_AVAILABLE while it creates __consumer_offsets."""
    deadline = time.monotonic() + COORDINATOR_WAIT_S
    while time.monotonic() < deadline:
        answer = client.request(10, 3, FindCoordinatorV3(key=group, key_type=0))
        if answer.error_code == ErrorCode.none:
            # and until the group's partition is loaded
            probe = client.request(
                OFFSET_FETCH, 7, OffsetFetchRequest(group_id=group, topics=None, require_stable=False)
            )
            if probe.error_code == ErrorCode.none:
                return
        time.sleep(0.1)
    raise AssertionError(f"no coordinator for {group} in {COORDINATOR_WAIT_S} s")


def join_request(
    group: str,
    member_id: str = "",
    topics: tuple[str, ...] = ("t",),
    instance: str | None = None,
    protocol_type: str = "consumer",
    session: datetime.timedelta = SESSION,
) -> JoinGroupRequest:
    protocol = JoinGroupRequestProtocol(name="range", metadata=subscription(*topics))
    return JoinGroupRequest(
        group_id=group,
        session_timeout=session,
        rebalance_timeout=REBALANCE,
        member_id=member_id,
        group_instance_id=instance,
        protocol_type=protocol_type,
        protocols=(protocol,),
    )


def join_new_member(client: WireClient, group: str, **options: Any) -> Any:
    """JoinGroup v5 the way clients do it: MEMBER_ID_REQUIRED first, then again with that id."""
    first = client.request(JOIN, 5, join_request(group, **options))
    assert first.error_code == ErrorCode.member_id_required
    assert first.member_id
    return client.request(JOIN, 5, join_request(group, member_id=first.member_id, **options))


def sync(client: WireClient, group: str, generation: int, member_id: str, assignments: dict[str, bytes]) -> Any:
    request = SyncGroupRequest(
        group_id=group,
        generation_id=generation,
        member_id=member_id,
        group_instance_id=None,
        assignments=tuple(SyncGroupRequestAssignment(member_id=m, assignment=a) for m, a in assignments.items()),
    )
    return client.request(SYNC, 3, request)


def heartbeat(
    client: WireClient, group: str, generation: int, member_id: str, instance: str | None = None
) -> ErrorCode:
    request = HeartbeatRequest(
        group_id=group, generation_id=generation, member_id=member_id, group_instance_id=instance
    )
    return ErrorCode(client.request(HEARTBEAT, 3, request).error_code)


def commit(
    client: WireClient,
    group: str,
    generation: int,
    member_id: str,
    topic: str,
    offsets: dict[int, int],
    metadata: str | None = "",
) -> list[ErrorCode]:
    partitions = tuple(
        OffsetCommitRequestPartition(
            partition_index=p, committed_offset=o, committed_leader_epoch=-1, committed_metadata=metadata
        )
        for p, o in offsets.items()
    )
    request = OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=generation,
        member_id=member_id,
        group_instance_id=None,
        topics=(OffsetCommitRequestTopic(name=topic, partitions=partitions),),
    )
    return [ErrorCode(p.error_code) for p in client.request(OFFSET_COMMIT, 7, request).topics[0].partitions]


def fetch_offsets(client: WireClient, group: str, topic: str, partitions: tuple[int, ...]) -> dict[int, int]:
    request = OffsetFetchRequest(
        group_id=group, topics=(OffsetFetchRequestTopic(name=topic, partition_indexes=partitions),), require_stable=True
    )
    answer = client.request(OFFSET_FETCH, 7, request)
    assert answer.error_code == ErrorCode.none
    return {p.partition_index: int(p.committed_offset) for t in answer.topics for p in t.partitions}


def describe(client: WireClient, group: str) -> Any:
    return client.request(
        DESCRIBE, 5, DescribeGroupsRequest(groups=(group,), include_authorized_operations=False)
    ).groups[0]


def leave(client: WireClient, group: str, member_id: str) -> tuple[ErrorCode, list[ErrorCode]]:
    request = LeaveGroupRequest(group_id=group, members=(MemberIdentity(member_id=member_id, group_instance_id=None),))
    answer = client.request(LEAVE, 3, request)
    return ErrorCode(answer.error_code), [ErrorCode(m.error_code) for m in answer.members]


@pytest.fixture
def client(port: int) -> Any:
    connection = WireClient(port)
    yield connection
    connection.close()


def test_find_coordinator_single_and_batched(client: WireClient) -> None:
    group = next(groups)
    wait_for_coordinator(client, group)
    single = client.request(10, 3, FindCoordinatorV3(key=group, key_type=0))
    batched = client.request(10, 4, FindCoordinatorV4(key_type=0, coordinator_keys=(group, next(groups))))
    assert single.error_code == ErrorCode.none and single.node_id >= 0 and single.port > 0
    assert [c.error_code for c in batched.coordinators] == [ErrorCode.none, ErrorCode.none]
    assert [c.port for c in batched.coordinators] == [single.port] * 2


def test_one_member_lifecycle(client: WireClient) -> None:
    group, topic = next(groups), create_topic(client)
    wait_for_coordinator(client, group)
    joined = join_new_member(client, group, topics=(topic,))
    assert (joined.error_code, joined.generation_id, joined.protocol_name) == (ErrorCode.none, 1, "range")
    assert joined.leader == joined.member_id
    assert [m.member_id for m in joined.members] == [joined.member_id]
    assert joined.members[0].metadata == subscription(topic)
    member = joined.member_id
    synced = sync(client, group, 1, member, {member: assignment(topic, 0)})
    assert (synced.error_code, synced.assignment) == (ErrorCode.none, assignment(topic, 0))
    assert heartbeat(client, group, 1, member) == ErrorCode.none
    assert heartbeat(client, group, 2, member) == ErrorCode.illegal_generation
    assert heartbeat(client, group, 1, "nobody") == ErrorCode.unknown_member_id
    assert commit(client, group, 1, member, topic, {0: 42}) == [ErrorCode.none]
    assert commit(client, group, 7, member, topic, {0: 43}) == [ErrorCode.illegal_generation]
    assert commit(client, group, 1, "nobody", topic, {0: 43}) == [ErrorCode.unknown_member_id]
    assert fetch_offsets(client, group, topic, (0,)) == {0: 42}
    described = describe(client, group)
    assert (described.error_code, described.group_state, described.protocol_type, described.protocol_data) == (
        ErrorCode.none,
        "Stable",
        "consumer",
        "range",
    )
    assert [(m.member_id, m.member_assignment) for m in described.members] == [(member, assignment(topic, 0))]
    assert leave(client, group, member) == (ErrorCode.none, [ErrorCode.none])
    assert heartbeat(client, group, 1, member) == ErrorCode.unknown_member_id
    after = describe(client, group)
    assert (after.group_state, after.members) == ("Empty", ())
    assert fetch_offsets(client, group, topic, (0,)) == {0: 42}


def test_second_member_triggers_a_rebalance(client: WireClient, port: int) -> None:
    group, topic = next(groups), create_topic(client)
    wait_for_coordinator(client, group)
    first = join_new_member(client, group, topics=(topic,))
    a = first.member_id
    assert sync(client, group, 1, a, {a: assignment(topic, 0)}).error_code == ErrorCode.none
    other = WireClient(port)
    try:
        asked = other.request(JOIN, 5, join_request(group, topics=(topic,)))
        assert asked.error_code == ErrorCode.member_id_required
        other.send(JOIN, 5, join_request(group, member_id=asked.member_id, topics=(topic,)), correlation_id=7)
        time.sleep(0.3)
        assert heartbeat(client, group, 1, a) == ErrorCode.rebalance_in_progress
        assert describe(client, group).group_state == "PreparingRebalance"
        # Committing with the old generation is still allowed while rebalancing.
        assert commit(client, group, 1, a, topic, {0: 5}) == [ErrorCode.none]
        rejoined = client.request(JOIN, 5, join_request(group, member_id=a, topics=(topic,)))
        b_joined = other.receive(JOIN, 5, correlation_id=7)
        assert (rejoined.error_code, b_joined.error_code) == (ErrorCode.none, ErrorCode.none)
        assert rejoined.generation_id == b_joined.generation_id == 2
        assert rejoined.leader == b_joined.leader == a  # the leader stays
        assert sorted(m.member_id for m in rejoined.members) == sorted([a, asked.member_id])
        assert b_joined.members == ()
        b = asked.member_id
        # The follower's SyncGroup waits for the leader's.
        other.send(
            SYNC,
            3,
            SyncGroupRequest(group_id=group, generation_id=2, member_id=b, group_instance_id=None, assignments=()),
            correlation_id=8,
        )
        time.sleep(0.2)
        assert describe(client, group).group_state == "CompletingRebalance"
        assert commit(client, group, 2, a, topic, {0: 6}) == [ErrorCode.rebalance_in_progress]
        leader_sync = sync(client, group, 2, a, {a: assignment(topic, 0), b: assignment(topic, 1)})
        follower_sync = other.receive(SYNC, 3, correlation_id=8)
        assert (leader_sync.assignment, follower_sync.assignment) == (assignment(topic, 0), assignment(topic, 1))
        assert sync(client, group, 1, a, {}).error_code == ErrorCode.illegal_generation
        assert describe(client, group).group_state == "Stable"
        assert leave(other, group, b) == (ErrorCode.none, [ErrorCode.none])
        assert heartbeat(client, group, 2, a) == ErrorCode.rebalance_in_progress
    finally:
        other.close()


def test_join_refusals(client: WireClient) -> None:
    group, topic = next(groups), create_topic(client)
    wait_for_coordinator(client, group)
    too_short = client.request(JOIN, 5, join_request(group, session=datetime.timedelta(milliseconds=1)))
    assert too_short.error_code == ErrorCode.invalid_session_timeout
    unknown = client.request(JOIN, 5, join_request(group, member_id="made-up"))
    assert unknown.error_code == ErrorCode.unknown_member_id
    joined = join_new_member(client, group, topics=(topic,))
    other_type = client.request(JOIN, 5, join_request(group, protocol_type="connect"))
    assert other_type.error_code == ErrorCode.inconsistent_group_protocol
    assert leave(client, group, joined.member_id)[1] == [ErrorCode.none]
    assert leave(client, group, joined.member_id)[1] == [ErrorCode.unknown_member_id]


def test_static_member_rejoin_fences_the_old_member_id(client: WireClient) -> None:
    group, topic = next(groups), create_topic(client)
    wait_for_coordinator(client, group)
    first = client.request(JOIN, 5, join_request(group, topics=(topic,), instance="host-1"))
    assert first.error_code == ErrorCode.none  # static members skip MEMBER_ID_REQUIRED
    old = first.member_id
    assert sync(client, group, first.generation_id, old, {old: assignment(topic, 0)}).error_code == ErrorCode.none
    again = client.request(JOIN, 5, join_request(group, topics=(topic,), instance="host-1"))
    assert again.error_code == ErrorCode.none
    assert again.member_id != old
    assert again.generation_id == first.generation_id  # no rebalance: same protocol, same place
    # The leader rejoined: below v9 (no skip_assignment) the answer names the old id as leader,
    # with no members, so the client does not compute an assignment again.
    assert (again.leader, again.members) == (old, ())
    assert describe(client, group).group_state == "Stable"
    assert heartbeat(client, group, again.generation_id, old, instance="host-1") == ErrorCode.fenced_instance_id
    described = describe(client, group)
    assert [(m.member_id, m.group_instance_id) for m in described.members] == [(again.member_id, "host-1")]


def test_commits_outside_group_management(client: WireClient) -> None:
    group, topic = next(groups), create_topic(client)
    wait_for_coordinator(client, group)
    assert fetch_offsets(client, group, topic, (0,)) == {0: -1}
    assert commit(client, group, -1, "", topic, {0: 10}) == [ErrorCode.none]
    assert fetch_offsets(client, group, topic, (0,)) == {0: 10}
    assert commit(client, next(groups), 3, "", topic, {0: 1}) == [ErrorCode.illegal_generation]
    assert commit(client, group, -1, "", "no-such-topic-here", {0: 1}) == [ErrorCode.unknown_topic_or_partition]
    assert commit(client, group, -1, "", topic, {0: 11}, metadata="x" * 4097) == [ErrorCode.offset_metadata_too_large]
    assert commit(client, group, -1, "", topic, {0: 12}, metadata=None) == [ErrorCode.none]
    assert fetch_offsets(client, group, topic, (0,)) == {0: 12}
    described = describe(client, group)
    assert (described.error_code, described.group_state, described.protocol_type) == (ErrorCode.none, "Empty", "")


def test_admin_apis(client: WireClient) -> None:
    group, topic = next(groups), create_topic(client)
    wait_for_coordinator(client, group)
    joined = join_new_member(client, group, topics=(topic,))
    member = joined.member_id
    sync(client, group, 1, member, {member: assignment(topic, 0)})
    assert commit(client, group, 1, member, topic, {0: 3}) == [ErrorCode.none]
    listed = client.request(LIST, 4, ListGroupsRequest(states_filter=("Stable",)))
    assert (group, "consumer", "Stable") in [(g.group_id, g.protocol_type, g.group_state) for g in listed.groups]
    empty_only = client.request(LIST, 4, ListGroupsRequest(states_filter=("Empty",)))
    assert group not in [g.group_id for g in empty_only.groups]
    new_describe = client.request(
        69, 0, ConsumerGroupDescribeRequest(group_ids=(group,), include_authorized_operations=False)
    )
    assert [g.error_code for g in new_describe.groups] == [ErrorCode.group_id_not_found]
    unknown = next(groups)
    deletion = client.request(DELETE, 2, DeleteGroupsRequest(groups_names=(group, unknown))).results
    assert {r.group_id: r.error_code for r in deletion} == {
        group: ErrorCode.non_empty_group,
        unknown: ErrorCode.group_id_not_found,
    }
    offset_delete = OffsetDeleteRequest(
        group_id=group,
        topics=(OffsetDeleteRequestTopic(name=topic, partitions=(OffsetDeleteRequestPartition(partition_index=0),)),),
    )
    subscribed = client.request(47, 0, offset_delete)
    assert subscribed.error_code == ErrorCode.none
    assert subscribed.topics[0].partitions[0].error_code == ErrorCode.group_subscribed_to_topic
    leave(client, group, member)
    assert client.request(47, 0, offset_delete).topics[0].partitions[0].error_code == ErrorCode.none
    assert fetch_offsets(client, group, topic, (0,)) == {0: -1}
    assert [r.error_code for r in client.request(DELETE, 2, DeleteGroupsRequest(groups_names=(group,))).results] == [
        ErrorCode.none
    ]
    assert describe(client, group).group_state == "Dead"


def test_offset_fetch_many_groups_and_all_offsets(client: WireClient) -> None:
    from kio.schema.offset_fetch.v8.request import OffsetFetchRequest as OffsetFetchV8
    from kio.schema.offset_fetch.v8.request import OffsetFetchRequestGroup, OffsetFetchRequestTopics

    first, second, topic = next(groups), next(groups), create_topic(client)
    wait_for_coordinator(client, first)
    wait_for_coordinator(client, second)
    assert commit(client, first, -1, "", topic, {0: 7}) == [ErrorCode.none]
    request = OffsetFetchV8(
        groups=(
            OffsetFetchRequestGroup(group_id=first, topics=None),
            OffsetFetchRequestGroup(
                group_id=second, topics=(OffsetFetchRequestTopics(name=topic, partition_indexes=(0,)),)
            ),
        ),
        require_stable=True,
    )
    answer = client.request(OFFSET_FETCH, 8, request)
    found = {
        g.group_id: (
            g.error_code,
            [(t.name, p.partition_index, p.committed_offset) for t in g.topics for p in t.partitions],
        )
        for g in answer.groups
    }
    assert found == {first: (ErrorCode.none, [(topic, 0, 7)]), second: (ErrorCode.none, [(topic, 0, -1)])}


def test_leave_group_with_many_members_and_instance_ids(client: WireClient, port: int) -> None:
    group, topic = next(groups), create_topic(client)
    wait_for_coordinator(client, group)
    static = client.request(JOIN, 5, join_request(group, topics=(topic,), instance="static-1"))
    assert static.error_code == ErrorCode.none
    sync(client, group, static.generation_id, static.member_id, {static.member_id: assignment(topic, 0)})
    request = LeaveGroupRequest(
        group_id=group,
        members=(
            MemberIdentity(member_id="", group_instance_id="static-1"),
            MemberIdentity(member_id="", group_instance_id="never-joined"),
            MemberIdentity(member_id="made-up", group_instance_id=None),
        ),
    )
    answer = client.request(LEAVE, 3, request)
    assert answer.error_code == ErrorCode.none
    assert [m.error_code for m in answer.members] == [
        ErrorCode.none,
        ErrorCode.unknown_member_id,
        ErrorCode.unknown_member_id,
    ]
    assert describe(client, group).group_state in ("PreparingRebalance", "Empty")


def test_describe_groups_v6_unknown_group(client: WireClient) -> None:
    from kio.schema.describe_groups.v6.request import DescribeGroupsRequest as DescribeGroupsV6

    group = next(groups)
    wait_for_coordinator(client, group)
    answer = client.request(DESCRIBE, 6, DescribeGroupsV6(groups=(group,), include_authorized_operations=False)).groups[
        0
    ]
    assert (answer.error_code, answer.group_state) == (ErrorCode.group_id_not_found, "Dead")
    old = describe(client, group)
    assert (old.error_code, old.group_state) == (ErrorCode.none, "Dead")


def test_the_offsets_topic_is_internal(client: WireClient, request: pytest.FixtureRequest) -> None:
    """Clients cannot write it; it is marked internal; it can be deleted (Kafka allows that).
    tidelog then starts over empty; Kafka 4.4 keeps answering from memory for a while, so what
    follows a deletion is checked on tidelog only."""
    from kio.schema.delete_topics.v4.request import DeleteTopicsRequest
    from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic

    from tests.conftest import make_batch
    from tests.server.test_bad_input import produce

    wait_for_coordinator(client, next(groups))
    answer = produce(client, "__consumer_offsets", make_batch(1))
    assert answer.error_code == ErrorCode.invalid_topic_exception
    metadata = MetadataRequest(
        topics=(MetadataRequestTopic(topic_id=None, name="__consumer_offsets"),),
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    (topic,) = client.request(3, 12, metadata).topics
    assert (topic.error_code, topic.is_internal) == (ErrorCode.none, True)
    group, data_topic = next(groups), create_topic(client)
    wait_for_coordinator(client, group)
    assert commit(client, group, -1, "", data_topic, {0: 7}) == [ErrorCode.none]
    deleted = client.request(20, 4, DeleteTopicsRequest(topic_names=("__consumer_offsets",), timeout=SESSION))
    assert deleted.responses[0].error_code == ErrorCode.none
    wait_for_coordinator(client, group)
    if request.node.callspec.params["port"] == "tidelog":
        assert fetch_offsets(client, group, data_topic, (0,)) == {0: -1}


def test_a_member_whose_connection_closed_still_counts_as_joined(client: WireClient, port: int) -> None:
    """Kafka keeps a pending JoinGroup when the connection goes: the rebalance completes with
    that member (it is removed later, at its session timeout), rather than waiting for the
    rebalance timeout."""
    group, topic = next(groups), create_topic(client)
    wait_for_coordinator(client, group)
    first = join_new_member(client, group, topics=(topic,))
    a = first.member_id
    sync(client, group, 1, a, {a: assignment(topic, 0)})
    other = WireClient(port)
    asked = other.request(JOIN, 5, join_request(group, topics=(topic,)))
    other.send(JOIN, 5, join_request(group, member_id=asked.member_id, topics=(topic,)), correlation_id=3)
    time.sleep(0.3)
    other.close()
    time.sleep(0.3)
    started = time.monotonic()
    rejoined = client.request(JOIN, 5, join_request(group, member_id=a, topics=(topic,)))
    assert time.monotonic() - started < REBALANCE.total_seconds() / 2
    assert (rejoined.error_code, rejoined.generation_id) == (ErrorCode.none, 2)
    assert sorted(m.member_id for m in rejoined.members) == sorted([a, asked.member_id])


def test_deleting_a_topic_deletes_its_committed_offsets(client: WireClient) -> None:
    from kio.schema.delete_topics.v4.request import DeleteTopicsRequest

    group, topic, kept = next(groups), create_topic(client), create_topic(client)
    wait_for_coordinator(client, group)
    assert commit(client, group, -1, "", topic, {0: 3}) == [ErrorCode.none]
    assert commit(client, group, -1, "", kept, {0: 4}) == [ErrorCode.none]
    assert (
        client.request(20, 4, DeleteTopicsRequest(topic_names=(topic,), timeout=SESSION)).responses[0].error_code
        == ErrorCode.none
    )
    deadline = time.monotonic() + COORDINATOR_WAIT_S
    while fetch_offsets(client, group, topic, (0,)) != {0: -1}:
        assert time.monotonic() < deadline, "the deleted topic's offset is still there"
        time.sleep(0.1)
    assert fetch_offsets(client, group, kept, (0,)) == {0: 4}


def test_a_member_that_does_not_rejoin_is_removed_at_the_rebalance_timeout(client: WireClient, port: int) -> None:
    group, topic = next(groups), create_topic(client)
    wait_for_coordinator(client, group)
    short = datetime.timedelta(seconds=1)

    def join_short(member_id: str = "") -> JoinGroupRequest:
        request = join_request(group, member_id=member_id, topics=(topic,))
        return JoinGroupRequest(
            group_id=group,
            session_timeout=SESSION,
            rebalance_timeout=short,
            member_id=member_id,
            group_instance_id=None,
            protocol_type="consumer",
            protocols=request.protocols,
        )

    a = client.request(JOIN, 5, join_short(client.request(JOIN, 5, join_short()).member_id))
    assert a.error_code == ErrorCode.none
    sync(client, group, a.generation_id, a.member_id, {a.member_id: assignment(topic, 0)})
    other = WireClient(port)
    try:
        b_id = other.request(JOIN, 5, join_short()).member_id
        started = time.monotonic()
        b = other.request(JOIN, 5, join_short(b_id))  # a never rejoins: b waits out the rebalance timeout
        waited = time.monotonic() - started
        assert b.error_code == ErrorCode.none and 0.5 < waited < 5
        assert (b.generation_id, b.leader, [m.member_id for m in b.members]) == (a.generation_id + 1, b_id, [b_id])
        assert heartbeat(client, group, a.generation_id, a.member_id) == ErrorCode.unknown_member_id
    finally:
        other.close()


def test_empty_group_id(client: WireClient) -> None:
    """Kafka refuses an empty group id for membership requests, and takes it for offset commits
    and fetches (old clients used it), which make it an Empty group like any other."""
    topic = create_topic(client)
    wait_for_coordinator(client, next(groups))
    assert heartbeat(client, "", 1, "m") == ErrorCode.invalid_group_id
    assert sync(client, "", 1, "m", {}).error_code == ErrorCode.invalid_group_id
    assert leave(client, "", "m") == (ErrorCode.invalid_group_id, [])
    assert client.request(JOIN, 5, join_request("")).error_code == ErrorCode.invalid_group_id
    assert commit(client, "", -1, "", topic, {0: 1}) == [ErrorCode.none]
    assert (
        client.request(OFFSET_FETCH, 7, OffsetFetchRequest(group_id="", topics=None, require_stable=False)).error_code
        == ErrorCode.none
    )
    assert (describe(client, "").error_code, describe(client, "").group_state) == (ErrorCode.none, "Empty")
