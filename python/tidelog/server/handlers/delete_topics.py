"""DeleteTopics v1-v6, by name or (v6) by topic id: decode, `Broker.delete_topic`, encode."""

from __future__ import annotations

import uuid
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
    cls = apis.response_class(ApiKey.DELETE_TOPICS, version)
    result_cls = element(cls, "responses")
    if hasattr(request, "topic_names"):
        wanted: list[tuple[str | None, uuid.UUID | None]] = [(name, None) for name in request.topic_names]
    else:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    results = [
        make(result_cls, name=d.name, topic_id=d.topic_id, error_code=d.error, error_message=d.message)
        for d in server.broker.delete_topics(wanted)
    ]
    response = make(cls, throttle_time=NO_THROTTLE, responses=tuple(results))
    return apis.encode_response(ApiKey.DELETE_TOPICS, version, response)
