"""ConsumerGroupDescribe v0-v1 (KIP-848): tidelog has only classic groups, so every group is
answered GROUP_ID_NOT_FOUND, as Kafka answers for a classic group. Clients then fall back to
DescribeGroups (an empty answer crashes librdkafka, so there is one result per group)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import AUTHORIZED_OPERATIONS_OMITTED, NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    group_cls = element(apis.response_class(ApiKey.CONSUMER_GROUP_DESCRIBE, version), "groups")
    groups = tuple(
        make(
            group_cls,
            error_code=ErrorCode.group_id_not_found,
            error_message=f"Group {group_id} is not a consumer group.",
            group_id=group_id,
            group_state="",
            group_epoch=-1,
            assignment_epoch=-1,
            assignor_name="",
            members=(),
            authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
        )
        for group_id in request.group_ids
    )
    return response(ApiKey.CONSUMER_GROUP_DESCRIBE, version, throttle_time=NO_THROTTLE, groups=groups)
