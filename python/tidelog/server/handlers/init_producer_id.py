"""InitProducerId v0-v5 without a transactional id: a new producer id with producer epoch 0.

As in Kafka, a request without a transactional id always gets a fresh producer id; the
(producer id, epoch) a v3+ request may carry is ignored (idempotent producers bump their epoch
themselves, KIP-360). Transactions are a later issue: a request with a transactional id is
answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED. That error is fatal and immediate in every
client, with a name that points at the transactional id, whereas COORDINATOR_NOT_AVAILABLE
(what a broker without a coordinator might say) is retriable and would leave clients retrying
forever.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import make
from tidelog.server.handlers.common import NO_THROTTLE

if TYPE_CHECKING:
    from tidelog.server.broker import Broker

log = logging.getLogger(__name__)

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1


def handle(broker: Broker, header: RequestHeader, request: Any) -> bytes:
    if request.transactional_id == "":
        error = ErrorCode.invalid_request  # Kafka: an empty transactional id is malformed
    elif request.transactional_id is not None:
        error = ErrorCode.transactional_id_authorization_failed
    else:
        try:
            producer_id = broker.producer_ids.allocate()
        except OSError as failure:  # the block could not be persisted: no id is safe to give
            log.error("persisting a producer-id block failed: %s", failure)
            error = ErrorCode.coordinator_load_in_progress  # retriable: the client asks again
        else:
            return answer(header.api_version, ErrorCode.none, producer_id, 0)
    return answer(header.api_version, error, NO_PRODUCER_ID, NO_PRODUCER_EPOCH)


def answer(version: int, error: ErrorCode, producer_id: int, epoch: int) -> bytes:
    cls = apis.response_class(ApiKey.INIT_PRODUCER_ID, version)
    response = make(cls, throttle_time=NO_THROTTLE, error_code=error, producer_id=producer_id, producer_epoch=epoch)
    return apis.encode_response(ApiKey.INIT_PRODUCER_ID, version, response)
