"""DescribeGroups v0-v6: state, protocol and members of classic groups.

Member metadata and assignments are shown only while the group is Stable, as Kafka does. An
unknown group is described as Dead (v0-v5) or answered GROUP_ID_NOT_FOUND (v6+).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.coordinator.group.group import GroupState
from tidelog.coordinator.runtime import CoordinatorUnavailable
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import AUTHORIZED_OPERATIONS_OMITTED, NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

GROUP_NOT_FOUND_MIN_VERSION = 6


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    group_cls = element(apis.response_class(ApiKey.DESCRIBE_GROUPS, version), "groups")
    described = tuple(describe_one(server, group_cls, group_id, version) for group_id in request.groups)
    return response(ApiKey.DESCRIBE_GROUPS, version, throttle_time=NO_THROTTLE, groups=described)


def describe_one(server: ServerContext, group_cls: type, group_id: str, version: int) -> Any:
    def answer(
        error: ErrorCode, state: str, protocol_type: str = "", protocol: str = "", members: tuple[Any, ...] = ()
    ) -> Any:
        return make(
            group_cls,
            error_code=error,
            error_message=None,
            group_id=group_id,
            group_state=state,
            protocol_type=protocol_type,
            protocol_data=protocol,
            members=members,
            authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
        )

    try:
        group = server.broker.groups.describe(group_id)
    except CoordinatorUnavailable as unavailable:
        return answer(unavailable.error_code, "")
    if group is None or group.is_(GroupState.DEAD):
        if version >= GROUP_NOT_FOUND_MIN_VERSION:
            return answer(ErrorCode.group_id_not_found, GroupState.DEAD.value)
        return answer(ErrorCode.none, GroupState.DEAD.value)
    stable = group.is_(GroupState.STABLE)
    member_cls = element(group_cls, "members")
    members = tuple(
        make(
            member_cls,
            member_id=m.member_id,
            group_instance_id=m.group_instance_id,
            client_id=m.client_id,
            client_host=m.client_host,
            member_metadata=m.metadata_for(group.protocol) if stable else b"",
            member_assignment=m.assignment if stable else b"",
        )
        for m in group.members.values()
    )
    return answer(
        ErrorCode.none, group.state.value, group.protocol_type or "", (group.protocol or "") if stable else "", members
    )
