"""AddPartitionsToTxn v0-v5: decode, `Broker.add_partitions_to_txn`, encode.

v0-v3 are what clients send: one transaction. v4+ is Kafka's broker-to-broker batched form
(many transactions, each possibly `verify_only`); it is answered too. Before v2 a fenced
producer is told INVALID_PRODUCER_EPOCH, as Kafka does (PRODUCER_FENCED came with KIP-588).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response
from tidelog.server.handlers.common import NO_THROTTLE, fenced_error

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

BATCHED_MIN_VERSION = 4
PRODUCER_FENCED_MIN_VERSION = 2


async def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    cls = apis.response_class(ApiKey.ADD_PARTITIONS_TO_TXN, version)
    if version < BATCHED_MIN_VERSION:
        errors = await _one(
            server,
            version,
            request.v3_and_below_transactional_id,
            request.v3_and_below_producer_id,
            request.v3_and_below_producer_epoch,
            request.v3_and_below_topics,
            verify_only=False,
        )
        topics = _topic_results(element(cls, "results_by_topic_v3_and_below"), errors)
        return response(
            ApiKey.ADD_PARTITIONS_TO_TXN, version, throttle_time=NO_THROTTLE, results_by_topic_v3_and_below=topics
        )
    result_cls = element(cls, "results_by_transaction")
    topic_cls = element(result_cls, "topic_results")
    results = []
    for txn in request.transactions:
        errors = await _one(
            server,
            version,
            txn.transactional_id,
            txn.producer_id,
            txn.producer_epoch,
            txn.topics,
            verify_only=txn.verify_only,
        )
        results.append(
            make(result_cls, transactional_id=txn.transactional_id, topic_results=_topic_results(topic_cls, errors))
        )
    return response(
        ApiKey.ADD_PARTITIONS_TO_TXN,
        version,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        results_by_transaction=tuple(results),
    )


async def _one(
    server: ServerContext,
    version: int,
    transactional_id: str,
    producer_id: int,
    epoch: int,
    topics: Sequence[Any],
    verify_only: bool,
) -> dict[tuple[str, int], ErrorCode]:
    partitions = [(t.name, int(p)) for t in topics for p in t.partitions]
    broker = server.broker
    if verify_only:
        # A partition not in the transaction: Kafka answers the batched form TRANSACTION_ABORTABLE.
        errors = {
            tp: abortable(broker.transactions.verify(transactional_id, int(producer_id), int(epoch), tp[0], tp[1]))
            for tp in partitions
        }
    else:
        errors = await broker.add_partitions_to_txn(transactional_id, int(producer_id), int(epoch), partitions)
    return {tp: fenced_error(error, version, PRODUCER_FENCED_MIN_VERSION) for tp, error in errors.items()}


def abortable(error: ErrorCode) -> ErrorCode:
    return ErrorCode.transaction_abortable if error == ErrorCode.invalid_txn_state else error


def _topic_results(topic_cls: Any, errors: dict[tuple[str, int], ErrorCode]) -> tuple[Any, ...]:
    partition_cls = element(topic_cls, "results_by_partition")
    by_topic: dict[str, list[Any]] = {}
    for (topic, index), error in errors.items():
        by_topic.setdefault(topic, []).append(make(partition_cls, partition_index=index, partition_error_code=error))
    return tuple(make(topic_cls, name=name, results_by_partition=tuple(parts)) for name, parts in by_topic.items())
