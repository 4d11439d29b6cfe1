"""DescribeConfigs v1-v4 for topics (overrides and defaults) and the broker."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.config import BrokerConfig, TopicConfig, kafka_key
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.broker import Broker

TOPIC, BROKER = 2, 4
DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG = 1, 4, 5
# Kafka's ConfigType ids.
TYPE_BOOLEAN, TYPE_STRING, TYPE_INT, TYPE_LONG, TYPE_LIST = 1, 2, 3, 5, 7
INT_KEYS = {"segment.bytes", "segment.index.bytes", "index.interval.bytes", "max.message.bytes"}
LIST_KEYS = {"cleanup.policy"}


def topic_entries(config: TopicConfig, overrides: dict[str, Any]) -> Iterator[tuple[str, str, int]]:
    """(key, value, source) for every topic config."""
    for key, value in config.to_kafka().items():
        yield key, value, DYNAMIC_TOPIC_CONFIG if key in overrides else DEFAULT_CONFIG


def config_type(key: str, value: str) -> int:
    if key in LIST_KEYS:
        return TYPE_LIST
    if key in INT_KEYS:
        return TYPE_INT
    if value.lstrip("-").isdigit():
        return TYPE_LONG
    return TYPE_BOOLEAN if value in ("true", "false") else TYPE_STRING


def broker_entries(config: BrokerConfig) -> Iterator[tuple[str, str, int]]:
    for field in dataclasses.fields(config):
        if field.name != "topic_defaults":
            value = getattr(config, field.name)
            yield (
                kafka_key(field.name),
                str(value).lower() if isinstance(value, bool) else str(value),
                STATIC_BROKER_CONFIG,
            )


def handle(broker: Broker, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.DESCRIBE_CONFIGS, version)
    result_cls = element(cls, "results")
    entry_cls = element(result_cls, "configs")
    results = []
    for resource in request.resources:
        error, message, entries = describe(broker, resource)
        wanted = resource.configuration_keys
        configs = tuple(
            make(
                entry_cls,
                name=name,
                value=value,
                read_only=resource.resource_type == BROKER,
                config_source=source,
                is_default=source == DEFAULT_CONFIG,
                is_sensitive=False,
                synonyms=(),
                config_type=config_type(name, value),
                documentation=None,
            )
            for name, value, source in entries
            if wanted is None or name in wanted
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
    return apis.encode_response(
        ApiKey.DESCRIBE_CONFIGS, version, make(cls, throttle_time=NO_THROTTLE, results=tuple(results))
    )


def describe(broker: Broker, resource: Any) -> tuple[ErrorCode, str | None, list[tuple[str, str, int]]]:
    if resource.resource_type == TOPIC:
        meta = broker.logs.topics.get(resource.resource_name)
        if meta is None:
            return ErrorCode.unknown_topic_or_partition, f"Topic '{resource.resource_name}' does not exist.", []
        return ErrorCode.none, None, list(topic_entries(broker.logs.topic_config(meta.name), meta.overrides))
    if resource.resource_type == BROKER:
        if resource.resource_name not in ("", str(broker.node_id)):
            return ErrorCode.invalid_request, f"unknown broker {resource.resource_name!r}", []
        return ErrorCode.none, None, list(broker_entries(broker.config))
    return ErrorCode.invalid_request, f"resource type {resource.resource_type} is not supported", []
