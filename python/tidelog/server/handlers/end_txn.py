"""EndTxn v0-v4: commit or abort (TV1 rules; v5 is TV2's and comes with it).

Answered once Prepare{Commit,Abort} is durable; the markers follow (see
`coordinator.transaction`). Before v2 a fenced producer is told INVALID_PRODUCER_EPOCH.
"""

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
    error = await server.broker.end_txn(
        request.transactional_id, int(request.producer_id), int(request.producer_epoch), bool(request.committed)
    )
    error = fenced_error(error, header.api_version, PRODUCER_FENCED_MIN_VERSION)
    return response(ApiKey.END_TXN, header.api_version, throttle_time=NO_THROTTLE, error_code=error)
