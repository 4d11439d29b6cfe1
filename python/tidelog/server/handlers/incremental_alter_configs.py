"""IncrementalAlterConfigs v0-v1 (topics and the broker) and AlterConfigs v0-v2, its older form
that replaces every dynamic value of a resource: decode, `Configs.alter`, encode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.core.configs import ConfigAlteration
from tidelog.core.types import AlterConfigOp
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    resources = [
        ConfigAlteration(
            r.resource_type, r.resource_name, tuple((c.config_operation, c.name, c.value) for c in r.configs)
        )
        for r in request.resources
    ]
    return _answer(server, header, ApiKey.INCREMENTAL_ALTER_CONFIGS, request, resources, incremental=True)


def handle_alter_configs(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    resources = [
        ConfigAlteration(
            r.resource_type, r.resource_name, tuple((AlterConfigOp.SET, c.name, c.value) for c in r.configs)
        )
        for r in request.resources
    ]
    return _answer(server, header, ApiKey.ALTER_CONFIGS, request, resources, incremental=False)


def _answer(
    server: ServerContext,
    header: RequestHeader,
    api: ApiKey,
    request: Any,
    resources: list[ConfigAlteration],
    incremental: bool,
) -> bytes:
    version = header.api_version
    cls = apis.response_class(api, version)
    result_cls = element(cls, "responses")
    answers = server.broker.configs.alter(resources, request.validate_only, incremental)
    results = tuple(
        make(
            result_cls,
            error_code=error,
            error_message=message,
            resource_type=resource.resource_type,
            resource_name=resource.name,
        )
        for resource, (error, message) in zip(resources, answers, strict=True)
    )
    response = make(cls, throttle_time=NO_THROTTLE, responses=results)
    return apis.encode_response(api, version, response)
