"""EndTxn v0-v5: commit or abort. v5 is TV2's (KIP-890 part 2), decided per request as Kafka
does: the epoch goes up at every end and the answer carries the producer id and epoch to go on
with.

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
TV2_MIN_VERSION = 5


async def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    answer = await server.broker.end_txn(
        request.transactional_id,
        int(request.producer_id),
        int(request.producer_epoch),
        bool(request.committed),
        tv2=version >= TV2_MIN_VERSION,
    )
    error = fenced_error(answer.error, version, PRODUCER_FENCED_MIN_VERSION)
    return response(
        ApiKey.END_TXN,
        version,
        throttle_time=NO_THROTTLE,
        error_code=error,
        producer_id=answer.producer_id,
        producer_epoch=answer.producer_epoch,
    )
