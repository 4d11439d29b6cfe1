"""DeleteRecords v0-v2: move the log start offset up (-1 means the high watermark)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE, error_code_for
from tidelog.storage import StorageError

if TYPE_CHECKING:
    from tidelog.server.broker import Broker

HIGH_WATERMARK = -1


def handle(broker: Broker, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.DELETE_RECORDS, version)
    topic_cls = element(cls, "topics")
    partition_cls = element(topic_cls, "partitions")
    topics = []
    for topic in request.topics:
        answers = []
        for wanted in topic.partitions:
            error, low_watermark = delete(broker, topic.name, wanted.partition_index, wanted.offset)
            answers.append(
                make(
                    partition_cls, partition_index=wanted.partition_index, low_watermark=low_watermark, error_code=error
                )
            )
        topics.append(make(topic_cls, name=topic.name, partitions=tuple(answers)))
    return apis.encode_response(
        ApiKey.DELETE_RECORDS, version, make(cls, throttle_time=NO_THROTTLE, topics=tuple(topics))
    )


def delete(broker: Broker, topic: str, index: int, offset: int) -> tuple[ErrorCode, int]:
    partition = broker.partition(topic, index)
    if partition is None:
        return ErrorCode.unknown_topic_or_partition, -1
    high_watermark = partition.high_watermark
    target = high_watermark if offset == HIGH_WATERMARK else offset
    try:
        return ErrorCode.none, partition.log.delete_records_before(target, high_watermark)
    except StorageError as error:
        return error_code_for(error), -1
