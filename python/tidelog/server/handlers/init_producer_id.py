"""InitProducerId v0-v5: decode, `Broker.init_producer_id`, encode.

As in Kafka, a request without a transactional id always gets a fresh producer id; the
(producer id, epoch) a v3+ request may carry is ignored (idempotent producers bump their epoch
themselves, KIP-360).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import make
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    error, producer_id, epoch = server.broker.init_producer_id(request.transactional_id)
    cls = apis.response_class(ApiKey.INIT_PRODUCER_ID, header.api_version)
    response = make(cls, throttle_time=NO_THROTTLE, error_code=error, producer_id=producer_id, producer_epoch=epoch)
    return apis.encode_response(ApiKey.INIT_PRODUCER_ID, header.api_version, response)
