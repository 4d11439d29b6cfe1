"""InitProducerId v0-v5: decode, `Broker.init_producer_id`, encode.

Without a transactional id the answer is a fresh producer id; with one, the transaction
coordinator's (v3+ requests carry the producer id and epoch the client had: KIP-360 recovery;
-1/-1 means none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import make
from tidelog.server.handlers.common import NO_THROTTLE, timedelta_ms

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

NO_PRODUCER_ID = -1


async def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    producer_id = getattr(request, "producer_id", NO_PRODUCER_ID)
    epoch = getattr(request, "producer_epoch", -1)
    expected = (int(producer_id), int(epoch)) if producer_id != NO_PRODUCER_ID else None
    timeout_ms = timedelta_ms(request.transaction_timeout)
    answer = await server.broker.init_producer_id(request.transactional_id, timeout_ms, expected)
    cls = apis.response_class(ApiKey.INIT_PRODUCER_ID, header.api_version)
    response = make(
        cls,
        throttle_time=NO_THROTTLE,
        error_code=answer.error,
        producer_id=answer.producer_id,
        producer_epoch=answer.producer_epoch,
    )
    return apis.encode_response(ApiKey.INIT_PRODUCER_ID, header.api_version, response)
