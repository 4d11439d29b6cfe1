"""Heartbeat v0-v4: keeps a member's session alive; tells it when to rejoin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.coordinator.group_coordinator import ShardLoading
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.broker import Broker


def handle(broker: Broker, header: RequestHeader, request: Any) -> bytes:
    try:
        error = broker.groups.heartbeat(
            request.group_id, request.generation_id, request.member_id, getattr(request, "group_instance_id", None)
        )
    except ShardLoading:
        error = ErrorCode.coordinator_load_in_progress
    return response(ApiKey.HEARTBEAT, header.api_version, throttle_time=NO_THROTTLE, error_code=error)
