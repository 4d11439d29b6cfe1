"""ListGroups v0-v5: every group, optionally filtered by state (v4+) and type (v5+)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

CLASSIC_GROUP_TYPE = "classic"


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    states = {s.lower() for s in getattr(request, "states_filter", ())}
    types = {t.lower() for t in getattr(request, "types_filter", ())}
    listed_cls = element(apis.response_class(ApiKey.LIST_GROUPS, version), "groups")
    listed = []
    if not types or CLASSIC_GROUP_TYPE in types:
        for group in server.broker.groups.list_groups():
            if states and group.state.value.lower() not in states:
                continue
            listed.append(
                make(
                    listed_cls,
                    group_id=group.group_id,
                    protocol_type=group.protocol_type or "",
                    group_state=group.state.value,
                    group_type=CLASSIC_GROUP_TYPE,
                )
            )
    error = ErrorCode.none if server.broker.groups.loaded() else ErrorCode.coordinator_load_in_progress
    return response(ApiKey.LIST_GROUPS, version, throttle_time=NO_THROTTLE, error_code=error, groups=tuple(listed))
