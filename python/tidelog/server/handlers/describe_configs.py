"""DescribeConfigs v1-v4 for topics (overrides and defaults) and the broker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.core.types import ConfigEntry
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

# Kafka's ConfigResource types.
TOPIC, BROKER = 2, 4


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.DESCRIBE_CONFIGS, version)
    result_cls = element(cls, "results")
    entry_cls = element(result_cls, "configs")
    results = []
    for resource in request.resources:
        error, message, entries = describe(server, resource)
        wanted = resource.configuration_keys
        configs = tuple(
            make(
                entry_cls,
                name=e.name,
                value=e.value,
                read_only=e.read_only,
                config_source=e.source,
                is_default=e.is_default,
                is_sensitive=False,
                synonyms=(),
                config_type=e.config_type,
                documentation=None,
            )
            for e in entries
            if wanted is None or e.name in wanted
        )
        results.append(
            make(
                result_cls,
                error_code=error,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
                configs=configs,
            )
        )
    response = make(cls, throttle_time=NO_THROTTLE, results=tuple(results))
    return apis.encode_response(ApiKey.DESCRIBE_CONFIGS, version, response)


def describe(server: ServerContext, resource: Any) -> tuple[ErrorCode, str | None, list[ConfigEntry]]:
    if resource.resource_type == TOPIC:
        return server.broker.describe_topic_configs(resource.resource_name)
    if resource.resource_type == BROKER:
        return server.broker.describe_broker_configs(resource.resource_name)
    return ErrorCode.invalid_request, f"resource type {resource.resource_type} is not supported", []
