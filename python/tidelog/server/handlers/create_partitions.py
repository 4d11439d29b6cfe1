"""CreatePartitions v0-v3: decode, `Broker.create_partitions` per topic, encode."""

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
    cls = apis.response_class(ApiKey.CREATE_PARTITIONS, version)
    result_cls = element(cls, "results")
    results = []
    for topic in request.topics:
        assignments = [list(a.broker_ids) for a in topic.assignments] if topic.assignments else None
        error, message = server.broker.create_partitions(topic.name, topic.count, assignments, request.validate_only)
        results.append(make(result_cls, name=topic.name, error_code=error, error_message=message))
    response = make(cls, throttle_time=NO_THROTTLE, results=tuple(results))
    return apis.encode_response(ApiKey.CREATE_PARTITIONS, version, response)
