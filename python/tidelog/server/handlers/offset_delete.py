"""OffsetDelete v0: drop committed offsets of partitions the group does not consume."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.coordinator.runtime import CoordinatorUnavailable
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


async def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    partitions = [(t.name, p.partition_index) for t in request.topics for p in t.partitions]
    try:
        error, errors = await server.broker.groups.delete_offsets(request.group_id, partitions)
    except CoordinatorUnavailable as unavailable:
        error, errors = unavailable.error_code, {}
    topic_cls = element(apis.response_class(ApiKey.OFFSET_DELETE, version), "topics")
    partition_cls = element(topic_cls, "partitions")
    topics = (
        ()
        if error != ErrorCode.none
        else tuple(
            make(
                topic_cls,
                name=t.name,
                partitions=tuple(
                    make(
                        partition_cls, partition_index=p.partition_index, error_code=errors[(t.name, p.partition_index)]
                    )
                    for p in t.partitions
                ),
            )
            for t in request.topics
        )
    )
    return response(ApiKey.OFFSET_DELETE, version, error_code=error, throttle_time=NO_THROTTLE, topics=topics)
