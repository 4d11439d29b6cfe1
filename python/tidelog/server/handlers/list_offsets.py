"""ListOffsets v1-v10: decode, `Broker.list_offset` per partition, encode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.core.types import IsolationLevel
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.LIST_OFFSETS, version)
    topic_cls = element(cls, "topics")
    partition_cls = element(topic_cls, "partitions")
    isolation = IsolationLevel(getattr(request, "isolation_level", IsolationLevel.READ_UNCOMMITTED))
    topics = []
    for topic in request.topics:
        answers = []
        for wanted in topic.partitions:
            listed = server.broker.list_offset(topic.name, wanted.partition_index, wanted.timestamp, isolation)
            answers.append(
                make(
                    partition_cls,
                    partition_index=wanted.partition_index,
                    error_code=listed.error,
                    timestamp=listed.timestamp,
                    offset=listed.offset,
                    leader_epoch=listed.leader_epoch,
                )
            )
        topics.append(make(topic_cls, name=topic.name, partitions=tuple(answers)))
    response = make(cls, throttle_time=NO_THROTTLE, topics=tuple(topics))
    return apis.encode_response(ApiKey.LIST_OFFSETS, version, response)
