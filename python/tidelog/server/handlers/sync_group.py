"""SyncGroup v0-v5: the leader hands in the assignment; every member gets its own once stored."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.coordinator.group.group import SyncResult
from tidelog.coordinator.group.shard import SyncRequest
from tidelog.coordinator.runtime import CoordinatorUnavailable
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


async def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    try:
        sync = SyncRequest(
            request.group_id,
            request.generation_id,
            request.member_id,
            getattr(request, "group_instance_id", None),
            getattr(request, "protocol_type", None),
            getattr(request, "protocol_name", None),
            {a.member_id: a.assignment for a in request.assignments},
        )
        result = await server.broker.groups.sync(sync)
    except CoordinatorUnavailable as unavailable:
        result = SyncResult(unavailable.error_code)
    return response(
        ApiKey.SYNC_GROUP,
        header.api_version,
        throttle_time=NO_THROTTLE,
        error_code=result.error,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name,
        assignment=result.assignment,
    )
