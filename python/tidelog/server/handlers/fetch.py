"""Fetch v4-v16: decode, `Broker.fetch`, encode; record bytes go out with sendfile.

No fetch sessions: every answer carries session id 0, which tells clients to send full fetch
requests (KIP-227's sessionless mode).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from tidelog.core.stats import record_errors
from tidelog.core.types import FetchedData, FetchPartition, IsolationLevel
from tidelog.protocol.fetch import VERSION_TOPIC_IDS, FetchedPartition, FetchedTopic, encode_fetch_response
from tidelog.protocol.framing import RequestHeader
from tidelog.protocol.wire import Sendable
from tidelog.server.handlers.common import ZERO_UUID, timedelta_ms

if TYPE_CHECKING:
    from tidelog.server.context import ServerContext

Parts = list[bytes | Sendable]


def handle(server: ServerContext, header: RequestHeader, request: Any) -> Parts | Awaitable[Parts]:
    version = header.api_version
    by_id = version >= VERSION_TOPIC_IDS
    wanted = [
        FetchPartition(
            None if by_id else topic.topic,
            topic.topic_id if by_id else None,
            p.partition,
            p.fetch_offset,
            p.partition_max_bytes,
        )
        for topic in request.topics
        for p in topic.partitions
    ]
    answer = server.broker.fetch(
        wanted,
        max_bytes=request.max_bytes,
        min_bytes=request.min_bytes,
        max_wait_ms=timedelta_ms(request.max_wait),
        isolation=IsolationLevel(request.isolation_level),
    )
    if isinstance(answer, list):
        return encode(version, request, answer)
    return encode_when_ready(version, request, answer)


async def encode_when_ready(version: int, request: Any, answer: Awaitable[list[FetchedData]]) -> Parts:
    return encode(version, request, await answer)


def encode(version: int, request: Any, results: list[FetchedData]) -> Parts:
    record_errors(r.error for r in results)
    answers = iter(results)
    topics = []
    for topic in request.topics:
        partitions = []
        data = None
        for _ in topic.partitions:
            data = next(answers)
            partitions.append(
                FetchedPartition(
                    data.partition,
                    data.error,
                    data.high_watermark,
                    data.last_stable_offset,
                    data.log_start_offset,
                    data.aborted_transactions,
                    data.records,
                )
            )
        name = data.topic if data is not None else getattr(topic, "topic", "")
        topic_id = data.topic_id if data is not None else getattr(topic, "topic_id", ZERO_UUID)
        topics.append(FetchedTopic(name, topic_id, partitions))
    return encode_fetch_response(version, topics)
