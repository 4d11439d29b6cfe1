"""Heartbeat v0-v4: keeps a member's session alive; tells it when to rejoin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.coordinator.runtime import CoordinatorUnavailable
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    try:
        error = server.broker.groups.heartbeat(
            request.group_id, request.generation_id, request.member_id, getattr(request, "group_instance_id", None)
        )
    except CoordinatorUnavailable as unavailable:
        error = unavailable.error_code
    return response(ApiKey.HEARTBEAT, header.api_version, throttle_time=NO_THROTTLE, error_code=error)
