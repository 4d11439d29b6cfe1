"""OffsetForLeaderEpoch v2-v4 (KIP-320): decode, `Broker.offset_for_leader_epoch` per
partition, encode. Consumers ask it to detect log truncation after a leader change."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.OFFSET_FOR_LEADER_EPOCH, version)
    topic_cls = element(cls, "topics")
    partition_cls = element(topic_cls, "partitions")
    topics = []
    for topic in request.topics:
        answers = []
        for wanted in topic.partitions:
            error, epoch, end_offset = server.broker.offset_for_leader_epoch(
                topic.topic, wanted.partition, getattr(wanted, "current_leader_epoch", -1), wanted.leader_epoch
            )
            answers.append(
                make(
                    partition_cls,
                    error_code=error,
                    partition=wanted.partition,
                    leader_epoch=epoch,
                    end_offset=end_offset,
                )
            )
        topics.append(make(topic_cls, topic=topic.topic, partitions=tuple(answers)))
    return response(ApiKey.OFFSET_FOR_LEADER_EPOCH, version, throttle_time=NO_THROTTLE, topics=tuple(topics))
