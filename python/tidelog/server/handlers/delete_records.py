"""DeleteRecords v0-v2: decode, `Broker.delete_records` per partition, encode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.DELETE_RECORDS, version)
    topic_cls = element(cls, "topics")
    partition_cls = element(topic_cls, "partitions")
    topics = []
    for topic in request.topics:
        answers = []
        for wanted in topic.partitions:
            error, low_watermark = server.broker.delete_records(topic.name, wanted.partition_index, wanted.offset)
            answers.append(
                make(
                    partition_cls, partition_index=wanted.partition_index, low_watermark=low_watermark, error_code=error
                )
            )
        topics.append(make(topic_cls, name=topic.name, partitions=tuple(answers)))
    response = make(cls, throttle_time=NO_THROTTLE, topics=tuple(topics))
    return apis.encode_response(ApiKey.DELETE_RECORDS, version, response)
