"""IncrementalAlterConfigs v0-v1 for topics: SET, DELETE, APPEND and SUBTRACT."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.config import ConfigError
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE
from tidelog.server.handlers.describe_configs import TOPIC

if TYPE_CHECKING:
    from tidelog.server.broker import Broker

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


def handle(broker: Broker, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.INCREMENTAL_ALTER_CONFIGS, version)
    result_cls = element(cls, "responses")
    results = []
    for resource in request.resources:
        error, message = alter(broker, resource, request.validate_only)
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


def alter(broker: Broker, resource: Any, validate_only: bool) -> tuple[ErrorCode, str | None]:
    if resource.resource_type != TOPIC:
        return ErrorCode.invalid_request, "only topic configs can be altered; broker configs are static"
    meta = broker.logs.topics.get(resource.resource_name)
    if meta is None:
        return ErrorCode.unknown_topic_or_partition, f"Topic '{resource.resource_name}' does not exist."
    overrides = dict(meta.overrides)
    current = broker.logs.topic_config(meta.name).to_kafka()
    for entry in resource.configs:
        if entry.config_operation == SET:
            overrides[entry.name] = entry.value
        elif entry.config_operation == DELETE:
            overrides.pop(entry.name, None)
        elif entry.config_operation in (APPEND, SUBTRACT):
            items = [i for i in current.get(entry.name, "").split(",") if i]
            change = [i for i in (entry.value or "").split(",") if i]
            items = (
                items + [i for i in change if i not in items]
                if entry.config_operation == APPEND
                else [i for i in items if i not in change]
            )
            overrides[entry.name] = ",".join(items)
        else:
            return ErrorCode.invalid_request, f"unknown config operation {entry.config_operation}"
    try:
        broker.config.topic_defaults.with_overrides(overrides)
        if not validate_only:
            broker.logs.alter_topic_config(meta.name, overrides)
            broker.topics_changed()
    except ConfigError as error:
        return ErrorCode.invalid_config, str(error)
    return ErrorCode.none, None
