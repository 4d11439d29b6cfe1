"""ApiVersions: the advertised API table, encoded once per version and cached.

From v3 it carries the features (KIP-584): with `tidelog.transaction.version=2` (the default)
the finalized feature transaction.version=2, so Java 4.x clients use TV2 (KIP-890 part 2); with
1 or 0 no feature at all (epoch -1, as a broker without features), so they use TV1.

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

NO_FEATURES_EPOCH = -1
# Features never change on this broker while it runs: any epoch from 0 on says "finalized".
FEATURES_EPOCH = 1


@functools.cache
def encoded(
    version: int, error_code: ErrorCode = ErrorCode.none, transaction_version: int = apis.TRANSACTION_VERSION_MAX
) -> bytes:
    cls = apis.response_class(ApiKey.API_VERSIONS, version)
    module = __import__(cls.__module__, fromlist=["ApiVersion"])
    api_keys = tuple(
        module.ApiVersion(api_key=key, min_version=low, max_version=high)
        for key, (low, high) in sorted(apis.advertised(transaction_version).items())
    )
    fields: dict[str, Any] = {"error_code": error_code, "api_keys": api_keys}
    if version >= 1:
        fields["throttle_time"] = NO_THROTTLE
    if version >= 3:
        fields.update(supported_features=(), finalized_features_epoch=NO_FEATURES_EPOCH, finalized_features=())
        fields["zk_migration_ready"] = False
        if transaction_version >= apis.TRANSACTION_VERSION_MAX:
            name, level = apis.TRANSACTION_VERSION_FEATURE, apis.TRANSACTION_VERSION_MAX
            fields.update(
                supported_features=(module.SupportedFeatureKey(name=name, min_version=0, max_version=level),),
                finalized_features_epoch=FEATURES_EPOCH,
                finalized_features=(
                    module.FinalizedFeatureKey(name=name, max_version_level=level, min_version_level=level),
                ),
            )
    return apis.encode_response(ApiKey.API_VERSIONS, version, cls(**fields))


def unsupported_version_body() -> bytes:
    return encoded(0, ErrorCode.unsupported_version)


def handle(server: Any, header: RequestHeader, request: Any) -> bytes:
    return encoded(header.api_version, ErrorCode.none, server.broker.config.tidelog_transaction_version)
