"""ListOffsets v1-v10: earliest, latest, max timestamp, or the first offset at a timestamp."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE, error_code_for
from tidelog.storage import Partition, StorageError

if TYPE_CHECKING:
    from tidelog.server.broker import Broker

LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL = -1, -2, -3, -4
NO_TIMESTAMP = -1
LEADER_EPOCH = 0


def handle(broker: Broker, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.LIST_OFFSETS, version)
    topic_cls = element(cls, "topics")
    partition_cls = element(topic_cls, "partitions")
    topics = []
    for topic in request.topics:
        answers = []
        for wanted in topic.partitions:
            partition = broker.partition(topic.name, wanted.partition_index)
            error, timestamp, offset = look_up(partition, wanted.timestamp)
            answers.append(
                make(
                    partition_cls,
                    partition_index=wanted.partition_index,
                    error_code=error,
                    timestamp=timestamp,
                    offset=offset,
                    leader_epoch=LEADER_EPOCH if offset >= 0 else -1,
                )
            )
        topics.append(make(topic_cls, name=topic.name, partitions=tuple(answers)))
    response = make(cls, throttle_time=NO_THROTTLE, topics=tuple(topics))
    return apis.encode_response(ApiKey.LIST_OFFSETS, version, response)


def look_up(partition: Partition | None, timestamp: int) -> tuple[ErrorCode, int, int]:
    """(error, timestamp, offset) as ListOffsets answers for one partition."""
    if partition is None:
        return ErrorCode.unknown_topic_or_partition, NO_TIMESTAMP, -1
    high_watermark = partition.high_watermark
    if timestamp == LATEST:
        return ErrorCode.none, NO_TIMESTAMP, high_watermark
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return ErrorCode.none, NO_TIMESTAMP, partition.log_start_offset
    try:
        if timestamp == MAX_TIMESTAMP:
            found = partition.log.max_timestamp_and_offset()
            offset_and_time = None if found is None else (found[1], found[0])
        else:
            offset_and_time = partition.log.offset_for_timestamp(timestamp)
    except StorageError as error:
        return error_code_for(error), NO_TIMESTAMP, -1
    if offset_and_time is None or offset_and_time[0] >= high_watermark:
        return ErrorCode.none, NO_TIMESTAMP, -1
    return ErrorCode.none, offset_and_time[1], offset_and_time[0]
