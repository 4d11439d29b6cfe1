"""DescribeTransactions v0: each transactional id's state, as `kafka-transactions.sh describe`
shows it (TRANSACTIONAL_ID_NOT_FOUND for an id the coordinator does not know)."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import NO_THROTTLE, NO_TIMESTAMP, datetime_from_ms

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    state_cls = element(apis.response_class(ApiKey.DESCRIBE_TRANSACTIONS, version), "transaction_states")
    topic_cls = element(state_cls, "topics")
    states = []
    for transactional_id in request.transactional_ids:
        error, metadata = server.broker.transactions.describe(transactional_id)
        if error == ErrorCode.none and metadata is None:
            error = ErrorCode.transactional_id_not_found
        if metadata is None or error != ErrorCode.none:
            states.append(
                make(
                    state_cls,
                    error_code=error,
                    transactional_id=transactional_id,
                    transaction_state="",
                    transaction_timeout=datetime.timedelta(0),
                    transaction_start_time=NO_TIMESTAMP,
                    producer_id=-1,
                    producer_epoch=-1,
                    topics=(),
                )
            )
            continue
        stored = metadata.stored
        by_topic: dict[str, list[int]] = {}
        for topic, index in sorted(stored.partitions):
            by_topic.setdefault(topic, []).append(index)
        states.append(
            make(
                state_cls,
                error_code=ErrorCode.none,
                transactional_id=transactional_id,
                transaction_state=stored.state.kafka_name,
                transaction_timeout=datetime.timedelta(milliseconds=stored.timeout_ms),
                transaction_start_time=datetime_from_ms(stored.start_ms) or NO_TIMESTAMP,
                producer_id=stored.producer_id,
                producer_epoch=stored.producer_epoch,
                topics=tuple(make(topic_cls, topic=t, partitions=tuple(p)) for t, p in by_topic.items()),
            )
        )
    return response(ApiKey.DESCRIBE_TRANSACTIONS, version, throttle_time=NO_THROTTLE, transaction_states=tuple(states))
