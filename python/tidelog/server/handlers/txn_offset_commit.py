"""TxnOffsetCommit v0-v5: offsets committed inside a transaction (`Broker.txn_offset_commit`).

v3+ carries the consumer's generation, member id and instance id, checked as Kafka does
(KIP-447); v0-v2 carry none, so those are not checked. v5 is TV2's: the group's partition joins
the transaction implicitly (no AddOffsetsToTxn).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.coordinator.group.shard import TxnCommitRequest
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from kio.schema.errors import ErrorCode

    from tidelog.server.context import ServerContext

NO_GENERATION = -1
TV2_MIN_VERSION = 5
NO_LEADER_EPOCH = -1


async def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    offsets = {
        (topic.name, int(p.partition_index)): (
            int(p.committed_offset),
            int(getattr(p, "committed_leader_epoch", NO_LEADER_EPOCH)),
            p.committed_metadata,
            -1,
        )
        for topic in request.topics
        for p in topic.partitions
    }
    commit = TxnCommitRequest(
        request.transactional_id,
        request.group_id,
        int(request.producer_id),
        int(request.producer_epoch),
        int(getattr(request, "generation_id", NO_GENERATION)),
        getattr(request, "member_id", ""),
        getattr(request, "group_instance_id", None),
        offsets,
    )
    errors = await server.broker.txn_offset_commit(commit, add_implicitly=header.api_version >= TV2_MIN_VERSION)
    return encode(header.api_version, errors)


def encode(version: int, errors: dict[tuple[str, int], ErrorCode]) -> bytes:
    topic_cls = element(apis.response_class(ApiKey.TXN_OFFSET_COMMIT, version), "topics")
    partition_cls = element(topic_cls, "partitions")
    by_topic: dict[str, list[Any]] = {}
    for (topic, index), error in errors.items():
        by_topic.setdefault(topic, []).append(make(partition_cls, partition_index=index, error_code=error))
    topics = tuple(make(topic_cls, name=name, partitions=tuple(parts)) for name, parts in by_topic.items())
    return response(ApiKey.TXN_OFFSET_COMMIT, version, throttle_time=NO_THROTTLE, topics=topics)
