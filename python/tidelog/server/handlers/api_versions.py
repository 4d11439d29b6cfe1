"""ApiVersions: the advertised API table, encoded once per version and cached.

An ApiVersions request in a version we do not know gets a v0 body with UNSUPPORTED_VERSION and
the table, so the client can retry with a version from it (KIP-511).
"""

from __future__ import annotations

import functools
from typing import Any

from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.common import NO_THROTTLE


@functools.cache
def encoded(version: int, error_code: ErrorCode = ErrorCode.none) -> bytes:
    cls = apis.response_class(ApiKey.API_VERSIONS, version)
    module = __import__(cls.__module__, fromlist=["ApiVersion"])
    api_keys = tuple(
        module.ApiVersion(api_key=key, min_version=low, max_version=high)
        for key, (low, high) in sorted(apis.SUPPORTED_VERSIONS.items())
    )
    fields: dict[str, Any] = {"error_code": error_code, "api_keys": api_keys}
    if version >= 1:
        fields["throttle_time"] = NO_THROTTLE
    if version >= 3:
        fields.update(
            supported_features=(), finalized_features_epoch=-1, finalized_features=(), zk_migration_ready=False
        )
    return apis.encode_response(ApiKey.API_VERSIONS, version, cls(**fields))


def unsupported_version_body() -> bytes:
    return encoded(0, ErrorCode.unsupported_version)


def handle(server: Any, header: RequestHeader, request: Any) -> bytes:
    return encoded(header.api_version)
