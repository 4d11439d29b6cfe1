"""OffsetFetch v1-v9: a group's committed offsets (v8+: many groups per request).

`require_stable` (v7+) asks for UNSTABLE_OFFSET_COMMIT (per partition, retriable) where a
transaction still holds an offset for the partition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.coordinator.group.shard import CommittedOffset
from tidelog.coordinator.runtime import CoordinatorUnavailable
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

BATCHED_GROUPS_MIN_VERSION = 8
# v0-v1 answered a loading coordinator per partition; from v2 the answer has a group error.
GROUP_ERROR_MIN_VERSION = 2

Offsets = dict[tuple[str, int], CommittedOffset]


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.OFFSET_FETCH, version)
    if version < BATCHED_GROUPS_MIN_VERSION:
        error, offsets = fetch(server, request.group_id, request.topics, stable(request))
        topics = encode_topics(cls, offsets, version)
        return response(ApiKey.OFFSET_FETCH, version, throttle_time=NO_THROTTLE, topics=topics, error_code=error)
    group_cls = element(cls, "groups")
    groups = []
    for wanted in request.groups:
        error, offsets = fetch(server, wanted.group_id, wanted.topics, stable(request))
        groups.append(
            make(
                group_cls, group_id=wanted.group_id, topics=encode_topics(group_cls, offsets, version), error_code=error
            )
        )
    return response(ApiKey.OFFSET_FETCH, version, throttle_time=NO_THROTTLE, groups=tuple(groups))


def stable(request: Any) -> bool:
    return bool(getattr(request, "require_stable", False))


def fetch(server: ServerContext, group_id: str, topics: Any, require_stable: bool) -> tuple[ErrorCode, Offsets]:
    partitions = None if topics is None else [(t.name, p) for t in topics for p in t.partition_indexes]
    try:
        return ErrorCode.none, server.broker.groups.fetch_offsets(group_id, partitions, require_stable)
    except CoordinatorUnavailable as unavailable:
        loading = CommittedOffset(-1, -1, "", unavailable.error_code)
        return unavailable.error_code, dict.fromkeys(partitions or [], loading)


def encode_topics(cls: type, offsets: Offsets, version: int) -> tuple[Any, ...]:
    topic_cls = element(cls, "topics")
    partition_cls = element(topic_cls, "partitions")
    by_topic: dict[str, list[Any]] = {}
    for (topic, partition), committed in offsets.items():
        per_partition = version < GROUP_ERROR_MIN_VERSION or committed.error == ErrorCode.unstable_offset_commit
        partition_error = committed.error if per_partition else ErrorCode.none
        by_topic.setdefault(topic, []).append(
            make(
                partition_cls,
                partition_index=partition,
                committed_offset=committed.offset,
                committed_leader_epoch=committed.leader_epoch,
                metadata=committed.metadata,
                error_code=partition_error,
            )
        )
    return tuple(make(topic_cls, name=name, partitions=tuple(parts)) for name, parts in by_topic.items())
