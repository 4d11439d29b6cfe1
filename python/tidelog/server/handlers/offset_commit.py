"""OffsetCommit v2-v9: store a group's positions in `__consumer_offsets`; answered once durable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.coordinator.group.shard import CommitRequest
from tidelog.coordinator.runtime import CoordinatorUnavailable, now_ms
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import NO_THROTTLE, timedelta_ms

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

NO_RETENTION = -1
NO_LEADER_EPOCH = -1


async def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    retention = getattr(request, "retention_time", None)  # v2-v4 only; -1 means the broker's setting
    retention_ms = NO_RETENTION if retention is None else timedelta_ms(retention)
    commit_time = now_ms()
    offsets = {}
    for topic in request.topics:
        for p in topic.partitions:
            expire = commit_time + retention_ms if retention_ms >= 0 else -1
            offsets[(topic.name, p.partition_index)] = (
                p.committed_offset,
                getattr(p, "committed_leader_epoch", NO_LEADER_EPOCH),
                p.committed_metadata,
                expire,
            )
    commit = CommitRequest(
        request.group_id,
        request.generation_id_or_member_epoch,
        request.member_id,
        getattr(request, "group_instance_id", None),
        offsets,
    )
    try:
        errors = await server.broker.groups.commit(commit, server.broker.has_partition)
    except CoordinatorUnavailable as unavailable:
        errors = dict.fromkeys(offsets, unavailable.error_code)
    return encode(header.api_version, request, errors)


def encode(version: int, request: Any, errors: dict[tuple[str, int], ErrorCode]) -> bytes:
    topic_cls = element(apis.response_class(ApiKey.OFFSET_COMMIT, version), "topics")
    partition_cls = element(topic_cls, "partitions")
    topics = tuple(
        make(
            topic_cls,
            name=topic.name,
            partitions=tuple(
                make(
                    partition_cls, partition_index=p.partition_index, error_code=errors[(topic.name, p.partition_index)]
                )
                for p in topic.partitions
            ),
        )
        for topic in request.topics
    )
    return response(ApiKey.OFFSET_COMMIT, version, throttle_time=NO_THROTTLE, topics=topics)
