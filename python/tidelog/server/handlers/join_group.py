"""JoinGroup v0-v9: a member joins (or rejoins) a classic group and waits for the generation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.coordinator.group.group import JoinResult
from tidelog.coordinator.group.shard import JoinRequest
from tidelog.coordinator.runtime import CoordinatorUnavailable
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import CLIENT_HOST, NO_THROTTLE, timedelta_ms

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


async def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    session_timeout = timedelta_ms(request.session_timeout)
    rebalance = getattr(request, "rebalance_timeout", None)  # v0 has none: the session timeout serves
    join = JoinRequest(
        request.group_id,
        request.member_id,
        getattr(request, "group_instance_id", None),
        header.client_id or "",
        CLIENT_HOST.get(),
        session_timeout,
        session_timeout if rebalance is None else timedelta_ms(rebalance),
        request.protocol_type,
        [(p.name, p.metadata) for p in request.protocols],
        header.api_version,
    )
    try:
        result = await server.broker.groups.join(join)
    except CoordinatorUnavailable as unavailable:
        result = JoinResult(unavailable.error_code, request.member_id)
    return encode(header.api_version, result)


def encode(version: int, result: JoinResult) -> bytes:
    member_cls = element(apis.response_class(ApiKey.JOIN_GROUP, version), "members")
    members = tuple(make(member_cls, member_id=m, group_instance_id=i, metadata=d) for m, i, d in result.members)
    return response(
        ApiKey.JOIN_GROUP,
        version,
        throttle_time=NO_THROTTLE,
        error_code=result.error,
        generation_id=result.generation,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name or ("" if version < 7 else None),
        leader=result.leader,
        skip_assignment=result.skip_assignment,
        member_id=result.member_id,
        members=members,
    )
