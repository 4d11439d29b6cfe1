"""CreatePartitions v0-v3: raise a topic's partition count."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE
from tidelog.storage import TopicError

if TYPE_CHECKING:
    from tidelog.server.broker import Broker


def handle(broker: Broker, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.CREATE_PARTITIONS, version)
    result_cls = element(cls, "results")
    results = []
    for topic in request.topics:
        error, message = grow(broker, topic, request.validate_only)
        results.append(make(result_cls, name=topic.name, error_code=error, error_message=message))
    return apis.encode_response(
        ApiKey.CREATE_PARTITIONS, version, make(cls, throttle_time=NO_THROTTLE, results=tuple(results))
    )


def grow(broker: Broker, topic: Any, validate_only: bool) -> tuple[ErrorCode, str | None]:
    meta = broker.logs.topics.get(topic.name)
    if meta is None:
        return ErrorCode.unknown_topic_or_partition, f"Topic '{topic.name}' does not exist."
    if topic.assignments:
        return ErrorCode.invalid_request, "manual replica assignment is not supported"
    if topic.count <= meta.partitions:
        return (
            ErrorCode.invalid_partitions,
            f"Topic currently has {meta.partitions} partitions, "
            f"which is higher than or equal to the requested {topic.count}.",
        )
    if validate_only:
        return ErrorCode.none, None
    try:
        broker.logs.create_partitions(topic.name, topic.count)
    except TopicError as error:
        return ErrorCode.invalid_partitions, str(error)
    broker.topics_changed()
    return ErrorCode.none, None
