"""LeaveGroup v0-v5: one member (v0-v2) or many, by member id or group.instance.id (v3+)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.coordinator.runtime import CoordinatorUnavailable
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

BATCHED_MEMBERS_MIN_VERSION = 3


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    if version < BATCHED_MEMBERS_MIN_VERSION:
        members: list[tuple[str, str | None]] = [(request.member_id, None)]
    else:
        members = [(m.member_id, m.group_instance_id) for m in request.members]
    try:
        error, member_errors = server.broker.groups.leave(request.group_id, members)
    except CoordinatorUnavailable as unavailable:
        error, member_errors = unavailable.error_code, []
    if version < BATCHED_MEMBERS_MIN_VERSION:
        # One member: its error is the answer's error.
        return response(
            ApiKey.LEAVE_GROUP,
            version,
            throttle_time=NO_THROTTLE,
            error_code=member_errors[0] if error == ErrorCode.none else error,
        )
    if error != ErrorCode.none:
        return response(ApiKey.LEAVE_GROUP, version, throttle_time=NO_THROTTLE, error_code=error, members=())
    member_cls = element(apis.response_class(ApiKey.LEAVE_GROUP, version), "members")
    answers = tuple(
        make(member_cls, member_id=m, group_instance_id=i, error_code=e)
        for (m, i), e in zip(members, member_errors, strict=False)
    )
    return response(ApiKey.LEAVE_GROUP, version, throttle_time=NO_THROTTLE, error_code=error, members=answers)
