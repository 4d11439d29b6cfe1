"""AddOffsetsToTxn v0-v4: the group's `__consumer_offsets` partition joins the transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import response
from tidelog.server.handlers.common import NO_THROTTLE, fenced_error

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

PRODUCER_FENCED_MIN_VERSION = 2


async def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    error = await server.broker.add_offsets_to_txn(
        request.transactional_id, int(request.producer_id), int(request.producer_epoch), request.group_id
    )
    error = fenced_error(error, header.api_version, PRODUCER_FENCED_MIN_VERSION)
    return response(ApiKey.ADD_OFFSETS_TO_TXN, header.api_version, throttle_time=NO_THROTTLE, error_code=error)
