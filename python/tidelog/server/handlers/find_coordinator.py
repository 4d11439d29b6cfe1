"""FindCoordinator v0-v6: this broker coordinates every group and transactional id (v4+ asks
for many keys at once).

The first request for a group creates `__consumer_offsets`, and the first for a transactional
id (key type 1) `__transaction_state`, as Kafka does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.errors import KafkaError
from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, response
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

GROUP_KEY, TRANSACTION_KEY = 0, 1
BATCHED_KEYS_MIN_VERSION = 4


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    broker = server.broker
    version = header.api_version
    key_type = getattr(request, "key_type", GROUP_KEY)
    if version < BATCHED_KEYS_MIN_VERSION:
        error, message = locate(server, key_type, request.key)
        return response(
            ApiKey.FIND_COORDINATOR,
            version,
            throttle_time=NO_THROTTLE,
            error_code=error,
            error_message=message,
            node_id=broker.node_id if error == ErrorCode.none else -1,
            host=broker.host if error == ErrorCode.none else "",
            port=broker.port if error == ErrorCode.none else -1,
        )
    coordinator_cls = element(apis.response_class(ApiKey.FIND_COORDINATOR, version), "coordinators")
    answers = []
    for key in request.coordinator_keys:
        error, message = locate(server, key_type, key)
        found = error == ErrorCode.none
        answers.append(
            coordinator_cls(
                key=key,
                node_id=broker.node_id if found else -1,
                host=broker.host if found else "",
                port=broker.port if found else -1,
                error_code=error,
                error_message=message,
            )
        )
    return response(ApiKey.FIND_COORDINATOR, version, throttle_time=NO_THROTTLE, coordinators=tuple(answers))


def locate(server: ServerContext, key_type: int, key: str) -> tuple[ErrorCode, str | None]:
    if key_type == TRANSACTION_KEY:
        if not key:
            return ErrorCode.invalid_request, "empty transactional id"
        ensure = server.broker.transactions.ensure_topic
    elif key_type != GROUP_KEY:
        return ErrorCode.invalid_request, f"unknown key type {key_type}"
    elif not key:
        return ErrorCode.invalid_request, "empty group id"
    else:
        ensure = server.broker.groups.ensure_offsets_topic
    try:
        ensure()  # the internal topic on first use
    except KafkaError as error:  # it cannot be created now (a full disk): clients retry
        return ErrorCode.coordinator_not_available, str(error)
    return ErrorCode.none, None
