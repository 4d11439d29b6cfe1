"""Random sequences of group requests from several connections (stale generations, made-up and
fenced member ids, static and dynamic members, other protocol types, leaves, deletes, commits):
every request gets a Kafka answer with an error code from the API's own set, no connection is
closed, the broker logs no internal error, and afterwards a real consumer group still works."""

from __future__ import annotations

import datetime
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from kio.schema.delete_groups.v2.request import DeleteGroupsRequest
from kio.schema.errors import ErrorCode
from kio.schema.heartbeat.v3.request import HeartbeatRequest
from kio.schema.join_group.v5.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.leave_group.v3.request import LeaveGroupRequest, MemberIdentity
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
from kio.schema.offset_fetch.v7.request import OffsetFetchRequest
from kio.schema.sync_group.v3.request import SyncGroupRequest, SyncGroupRequestAssignment

from tests.compat.test_group_differential import assignment, describe, subscription, wait_for_coordinator
from tests.server.conftest import BrokerProcess, free_port
from tests.server.wire_client import WireClient

SEEDS = (1, 2, 3)
STEPS = 150
MEMBERS = 3
GROUP, TOPIC = "chaos", "chaos-topic"
SESSION = datetime.timedelta(milliseconds=800)
REBALANCE = datetime.timedelta(milliseconds=400)
E = ErrorCode
# What each API may answer here (Kafka's codes for the classic protocol).
ALLOWED = {
    "join": {
        E.none,
        E.member_id_required,
        E.unknown_member_id,
        E.fenced_instance_id,
        E.inconsistent_group_protocol,
        E.rebalance_in_progress,
        E.coordinator_not_available,
    },
    "sync": {
        E.none,
        E.unknown_member_id,
        E.illegal_generation,
        E.rebalance_in_progress,
        E.fenced_instance_id,
        E.inconsistent_group_protocol,
    },
    "heartbeat": {E.none, E.unknown_member_id, E.illegal_generation, E.rebalance_in_progress, E.fenced_instance_id},
    "leave": {E.none, E.unknown_member_id, E.fenced_instance_id},
    "commit": {
        E.none,
        E.unknown_member_id,
        E.illegal_generation,
        E.rebalance_in_progress,
        E.fenced_instance_id,
        E.coordinator_not_available,
    },
    "delete": {E.none, E.non_empty_group, E.group_id_not_found},
    "offset_delete": {E.none, E.group_id_not_found, E.non_empty_group, E.group_subscribed_to_topic},
}


@pytest.fixture
def chaos_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    settings = {"group.initial.rebalance.delay.ms": "0", "group.min.session.timeout.ms": "100", "num.partitions": "2"}
    process = BrokerProcess(tmp_path / "data", free_port(), settings).start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


class Member:
    def __init__(self, port: int, instance: str | None) -> None:
        self.client = WireClient(port)
        self.instance = instance
        self.member_id = ""
        self.generation = -1


def step(rng: random.Random, member: Member, known_ids: list[str]) -> tuple[str, list[ErrorCode]]:
    action = rng.choice(
        ["join", "join", "sync", "heartbeat", "heartbeat", "leave", "commit", "commit", "delete", "offset_delete"]
    )
    member_id = rng.choice([member.member_id, member.member_id, "", "made-up", *known_ids[-3:]])
    generation = rng.choice([member.generation, member.generation, -1, member.generation + 1, 0])
    client = member.client
    if action == "join":
        protocol_type = rng.choice(["consumer", "consumer", "consumer", "other"])
        request = JoinGroupRequest(
            group_id=GROUP,
            session_timeout=SESSION,
            rebalance_timeout=REBALANCE,
            member_id=member_id,
            group_instance_id=member.instance,
            protocol_type=protocol_type,
            protocols=(JoinGroupRequestProtocol(name="range", metadata=subscription(TOPIC)),),
        )
        answer = client.request(11, 5, request)
        if answer.member_id:
            member.member_id = answer.member_id
            known_ids.append(answer.member_id)
        if answer.error_code == E.none:
            member.generation = answer.generation_id
        return action, [ErrorCode(answer.error_code)]
    if action == "sync":
        assignments = tuple(
            SyncGroupRequestAssignment(member_id=m, assignment=assignment(TOPIC, 0)) for m in known_ids[-2:]
        )
        request = SyncGroupRequest(
            group_id=GROUP,
            generation_id=generation,
            member_id=member_id,
            group_instance_id=member.instance,
            assignments=assignments,
        )
        return action, [ErrorCode(client.request(14, 3, request).error_code)]
    if action == "heartbeat":
        request = HeartbeatRequest(
            group_id=GROUP, generation_id=generation, member_id=member_id, group_instance_id=member.instance
        )
        return action, [ErrorCode(client.request(12, 3, request).error_code)]
    if action == "leave":
        request = LeaveGroupRequest(
            group_id=GROUP, members=(MemberIdentity(member_id=member_id, group_instance_id=member.instance),)
        )
        answer = client.request(13, 3, request)
        return action, [ErrorCode(answer.error_code), *(ErrorCode(m.error_code) for m in answer.members)]
    if action == "commit":
        partitions = (
            OffsetCommitRequestPartition(
                partition_index=rng.randrange(2),
                committed_offset=rng.randrange(100),
                committed_leader_epoch=-1,
                committed_metadata="chaos",
            ),
        )
        request = OffsetCommitRequest(
            group_id=GROUP,
            generation_id_or_member_epoch=generation,
            member_id=member_id,
            group_instance_id=member.instance,
            topics=(OffsetCommitRequestTopic(name=TOPIC, partitions=partitions),),
        )
        return action, [ErrorCode(p.error_code) for t in client.request(8, 7, request).topics for p in t.partitions]
    if action == "delete":
        return action, [
            ErrorCode(r.error_code) for r in client.request(42, 2, DeleteGroupsRequest(groups_names=(GROUP,))).results
        ]
    request = OffsetDeleteRequest(
        group_id=GROUP,
        topics=(OffsetDeleteRequestTopic(name=TOPIC, partitions=(OffsetDeleteRequestPartition(partition_index=0),)),),
    )
    answer = client.request(47, 0, request)
    return action, [
        ErrorCode(answer.error_code),
        *(ErrorCode(p.error_code) for t in answer.topics for p in t.partitions),
    ]


@pytest.mark.parametrize("seed", SEEDS)
def test_random_group_requests_get_kafka_answers(chaos_broker: BrokerProcess, seed: int) -> None:
    rng = random.Random(seed)
    producer = Producer({"bootstrap.servers": chaos_broker.bootstrap})
    producer.produce(TOPIC, b"x")
    producer.flush(10)
    members = [Member(chaos_broker.port, rng.choice([None, f"static-{i}"])) for i in range(MEMBERS)]
    wait_for_coordinator(members[0].client, GROUP)
    known_ids: list[str] = []
    for _ in range(STEPS):
        action, errors = step(rng, rng.choice(members), known_ids)
        assert set(errors) <= ALLOWED[action], (action, errors)
    for member in members:
        assert describe(member.client, GROUP).error_code == E.none  # every connection still answers
        member.client.close()
    check = WireClient(chaos_broker.port)
    assert (
        check.request(9, 7, OffsetFetchRequest(group_id=GROUP, topics=None, require_stable=False)).error_code == E.none
    )
    check.close()
    assert "internal error" not in chaos_broker.log_text() and "Traceback" not in chaos_broker.log_text()
    assert_a_real_group_still_works(chaos_broker)


def assert_a_real_group_still_works(broker: BrokerProcess) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "after-chaos",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    message = None
    for _ in range(100):
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            break
    assert message is not None and message.value() == b"x"
    consumer.commit(message, asynchronous=False)
    consumer.close()
