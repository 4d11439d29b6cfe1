"""SyncGroup v0-v5: the leader hands in the assignment; every member gets its own once stored."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.coordinator.group import SyncResult
from tidelog.coordinator.group_coordinator import ShardLoading
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.broker import Broker


async def handle(broker: Broker, header: RequestHeader, request: Any) -> bytes:
    try:
        result = await broker.groups.sync(
            request.group_id,
            request.generation_id,
            request.member_id,
            getattr(request, "group_instance_id", None),
            getattr(request, "protocol_type", None),
            getattr(request, "protocol_name", None),
            {a.member_id: a.assignment for a in request.assignments},
        )
    except ShardLoading:
        result = SyncResult(ErrorCode.coordinator_load_in_progress)
    return response(
        ApiKey.SYNC_GROUP,
        header.api_version,
        throttle_time=NO_THROTTLE,
        error_code=result.error,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name,
        assignment=result.assignment,
    )
