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
    wanted = [
        (t.name, t.count, [list(a.broker_ids) for a in t.assignments] if t.assignments else None)
        for t in request.topics
    ]
    results = [
        make(result_cls, name=name, error_code=error, error_message=message)
        for name, error, message in server.broker.create_partitions_of(wanted, request.validate_only)
    ]
    response = make(cls, throttle_time=NO_THROTTLE, results=tuple(results))
    return apis.encode_response(ApiKey.CREATE_PARTITIONS, version, response)
