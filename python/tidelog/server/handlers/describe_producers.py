"""DescribeProducers v0: the idempotent producers each partition knows (`kafka-transactions
describe-producers`): producer id, producer epoch, last sequence, last timestamp."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.DESCRIBE_PRODUCERS, version)
    topic_cls = element(cls, "topics")
    partition_cls = element(topic_cls, "partitions")
    state_cls = element(partition_cls, "active_producers")
    topics = []
    for topic in request.topics:
        partitions = []
        for index in topic.partition_indexes:
            error, entries = server.broker.describe_producers(topic.name, index)
            if error != ErrorCode.none:
                partitions.append(
                    make(
                        partition_cls,
                        partition_index=index,
                        error_code=error,
                        error_message=None,
                        active_producers=(),
                    )
                )
                continue
            producers = tuple(
                make(
                    state_cls,
                    producer_id=entry.producer_id,
                    producer_epoch=entry.epoch,
                    last_sequence=entry.last_sequence,
                    last_timestamp=entry.last_timestamp,
                    coordinator_epoch=entry.coordinator_epoch,
                    current_txn_start_offset=entry.current_txn_first_offset,
                )
                for entry in entries
            )
            partitions.append(
                make(
                    partition_cls,
                    partition_index=index,
                    error_code=ErrorCode.none,
                    error_message=None,
                    active_producers=producers,
                )
            )
        topics.append(make(topic_cls, name=topic.name, partitions=tuple(partitions)))
    response = make(cls, throttle_time=NO_THROTTLE, topics=tuple(topics))
    return apis.encode_response(ApiKey.DESCRIBE_PRODUCERS, version, response)
