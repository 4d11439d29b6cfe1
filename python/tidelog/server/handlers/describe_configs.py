"""DescribeConfigs v1-v4 for topics and the broker: decode, `Configs.describe`, encode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.DESCRIBE_CONFIGS, version)
    result_cls = element(cls, "results")
    entry_cls = element(result_cls, "configs")
    synonym_cls = element(entry_cls, "synonyms")
    with_synonyms = request.include_synonyms
    results = []
    for resource in request.resources:
        error, message, entries = server.broker.configs.describe(resource.resource_type, resource.resource_name)
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
                synonyms=tuple(make(synonym_cls, name=s.name, value=s.value, source=s.source) for s in e.synonyms)
                if with_synonyms
                else (),
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
