"""IncrementalAlterConfigs v0-v1 for topics: decode, `Broker.alter_topic_configs`, encode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.core.types import AlterConfigOp
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE
from tidelog.server.handlers.describe_configs import TOPIC

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.INCREMENTAL_ALTER_CONFIGS, version)
    result_cls = element(cls, "responses")
    results = []
    for resource in request.resources:
        error, message = alter(server, resource, request.validate_only)
        results.append(
            make(
                result_cls,
                error_code=error,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
            )
        )
    response = make(cls, throttle_time=NO_THROTTLE, responses=tuple(results))
    return apis.encode_response(ApiKey.INCREMENTAL_ALTER_CONFIGS, version, response)


def alter(server: ServerContext, resource: Any, validate_only: bool) -> tuple[ErrorCode, str | None]:
    if resource.resource_type != TOPIC:
        return ErrorCode.invalid_request, "only topic configs can be altered; broker configs are static"
    operations = []
    for entry in resource.configs:
        try:
            operation = AlterConfigOp(entry.config_operation)
        except ValueError:
            return ErrorCode.invalid_request, f"unknown config operation {entry.config_operation}"
        operations.append((operation, entry.name, entry.value))
    return server.broker.alter_topic_configs(resource.resource_name, operations, validate_only)
