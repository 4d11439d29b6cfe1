"""DescribeConfigs, IncrementalAlterConfigs and AlterConfigs over the wire (kio), for tests of
topic and broker configs on tidelog and on Kafka."""

from __future__ import annotations

from kio.schema.alter_configs.v2.request import AlterableConfig as LegacyConfig
from kio.schema.alter_configs.v2.request import AlterConfigsRequest
from kio.schema.alter_configs.v2.request import AlterConfigsResource as LegacyResource
from kio.schema.describe_configs.v4.request import DescribeConfigsRequest, DescribeConfigsResource
from kio.schema.errors import ErrorCode
from kio.schema.incremental_alter_configs.v1.request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)
from kio.static.primitive import i8

from tests.server.wire_client import WireClient

TOPIC, BROKER = 2, 4
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
INCREMENTAL_ALTER_CONFIGS, ALTER_CONFIGS, DESCRIBE_CONFIGS = 44, 33, 32
Described = dict[str, tuple[str | None, int, bool, tuple[tuple[str, str | None, int], ...]]]


def alter_request(
    name: str, operations: list[tuple[str, str | None, int]], validate_only: bool = False, resource_type: int = BROKER
) -> IncrementalAlterConfigsRequest:
    configs = tuple(AlterableConfig(name=k, config_operation=i8(op), value=v) for k, v, op in operations)
    resource = AlterConfigsResource(resource_type=i8(resource_type), resource_name=name, configs=configs)
    return IncrementalAlterConfigsRequest(resources=(resource,), validate_only=validate_only)


def alter(
    port: int,
    name: str,
    operations: list[tuple[str, str | None, int]],
    validate_only: bool = False,
    resource_type: int = BROKER,
) -> tuple[ErrorCode, str | None]:
    """IncrementalAlterConfigs of one resource (a broker's by default): its error and message."""
    client = WireClient(port)
    try:
        answer = client.request(
            INCREMENTAL_ALTER_CONFIGS, 1, alter_request(name, operations, validate_only, resource_type)
        )
    finally:
        client.close()
    (result,) = answer.responses
    return result.error_code, result.error_message


def alter_legacy(port: int, name: str, configs: dict[str, str]) -> tuple[ErrorCode, str | None]:
    entries = tuple(LegacyConfig(name=k, value=v) for k, v in configs.items())
    resource = LegacyResource(resource_type=i8(BROKER), resource_name=name, configs=entries)
    client = WireClient(port)
    try:
        (result,) = client.request(
            ALTER_CONFIGS, 2, AlterConfigsRequest(resources=(resource,), validate_only=False)
        ).responses
    finally:
        client.close()
    return result.error_code, result.error_message


def describe(port: int, resource_type: int, name: str, keys: tuple[str, ...] | None = None) -> Described:
    """name → (value, source, read only, synonyms (name, value, source)) of the keys asked."""
    resource = DescribeConfigsResource(resource_type=i8(resource_type), resource_name=name, configuration_keys=keys)
    client = WireClient(port)
    try:
        (result,) = client.request(
            DESCRIBE_CONFIGS,
            4,
            DescribeConfigsRequest(resources=(resource,), include_synonyms=True, include_documentation=False),
        ).results
    finally:
        client.close()
    assert result.error_code == ErrorCode.none, result.error_message
    return {
        e.name: (e.value, e.config_source, e.read_only, tuple((s.name, s.value, s.source) for s in e.synonyms))
        for e in result.configs
    }
