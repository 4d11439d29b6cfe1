"""WriteTxnMarkers v1-v2: markers sent by an admin client (`kafka-transactions.sh abort` ends a
hanging transaction the coordinator does not know with the producer's id, epoch and coordinator
epoch from DescribeProducers). Each marker passes the partition's checks (epoch, coordinator
epoch), as the coordinator's own markers do; answered once durable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.protocol import apis
from tidelog.protocol.apis import ApiKey
from tidelog.protocol.framing import RequestHeader
from tidelog.server.handlers.build import element, make, response

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext


async def handle(server: ServerContext, header: RequestHeader, request: Any) -> bytes:
    version = header.api_version
    result_cls = element(apis.response_class(ApiKey.WRITE_TXN_MARKERS, version), "markers")
    topic_cls = element(result_cls, "topics")
    partition_cls = element(topic_cls, "partitions")
    results = []
    for marker in request.markers:
        partitions = [(t.name, int(p)) for t in marker.topics for p in t.partition_indexes]
        errors = await server.broker.write_txn_markers(
            int(marker.producer_id),
            int(marker.producer_epoch),
            int(marker.coordinator_epoch),
            bool(marker.transaction_result),
            partitions,
        )
        by_topic: dict[str, list[Any]] = {}
        for (topic, index), error in errors.items():
            by_topic.setdefault(topic, []).append(make(partition_cls, partition_index=index, error_code=error))
        topics = tuple(make(topic_cls, name=name, partitions=tuple(parts)) for name, parts in by_topic.items())
        results.append(make(result_cls, producer_id=marker.producer_id, topics=topics))
    return response(ApiKey.WRITE_TXN_MARKERS, version, markers=tuple(results))
