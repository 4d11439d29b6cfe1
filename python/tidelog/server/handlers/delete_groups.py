"""DeleteGroups v0-v2: remove Empty groups and all their committed offsets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.coordinator.runtime import CoordinatorUnavailable
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


async def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    result_cls = element(apis.response_class(ApiKey.DELETE_GROUPS, version), "results")
    results = []
    for group_id in request.groups_names:
        try:
            error = await server.broker.groups.delete_group(group_id)
        except CoordinatorUnavailable as unavailable:
            error = unavailable.error_code
        results.append(make(result_cls, group_id=group_id, error_code=error))
    return response(ApiKey.DELETE_GROUPS, version, throttle_time=NO_THROTTLE, results=tuple(results))
