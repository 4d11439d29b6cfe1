"""Fetch v4-v16: whole batches below the high watermark, sent with sendfile; long polls.

No fetch sessions: every answer carries session id 0, which tells clients to send full fetch
requests (KIP-227's sessionless mode). read_committed reads to the last stable offset, which
equals the high watermark until transactions exist.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol.fetch import VERSION_TOPIC_IDS, FetchedPartition, FetchedTopic, encode_fetch_response
from tidelog.protocol.framing import RequestHeader
from tidelog.protocol.wire import Sendable
from tidelog.server.handlers.common import ZERO_UUID, error_code_for
from tidelog.storage import Partition, StorageError

if TYPE_CHECKING:
    from tidelog.server.broker import Broker

READ_COMMITTED = 1


@dataclass(slots=True)
class Wanted:
    """One partition a fetch asks for, resolved to its log."""

    index: int
    fetch_offset: int
    partition_max_bytes: int
    partition: Partition | None
    missing_error: ErrorCode


def handle(broker: Broker, header: RequestHeader, request: Any) -> list[bytes | Sendable] | Any:
    version = header.api_version
    plan = resolve(broker, version, request)
    committed = request.isolation_level == READ_COMMITTED
    topics, total, failed = collect(plan, request.max_bytes, committed)
    max_wait_s = request.max_wait.total_seconds()
    if total >= request.min_bytes or max_wait_s <= 0 or failed or not plan:
        return encode_fetch_response(version, topics)
    return long_poll(version, plan, request, committed, max_wait_s)


def resolve(broker: Broker, version: int, request: Any) -> list[tuple[str, uuid.UUID, list[Wanted]]]:
    plan = []
    for topic in request.topics:
        if version >= VERSION_TOPIC_IDS:
            meta = broker.topic_by_id(topic.topic_id)
            name, topic_id, missing = (meta.name if meta else ""), topic.topic_id, ErrorCode.unknown_topic_id
        else:
            meta = broker.logs.topics.get(topic.topic)
            name, topic_id, missing = (
                topic.topic,
                (meta.topic_id if meta else ZERO_UUID),
                ErrorCode.unknown_topic_or_partition,
            )
        wanted = [
            Wanted(
                p.partition,
                p.fetch_offset,
                p.partition_max_bytes,
                broker.partition(name, p.partition) if meta else None,
                missing,
            )
            for p in topic.partitions
        ]
        plan.append((name, topic_id, wanted))
    return plan


def collect(
    plan: list[tuple[str, uuid.UUID, list[Wanted]]], max_bytes: int, committed: bool
) -> tuple[list[FetchedTopic], int, bool]:
    """Reads every partition within the limits (KIP-74: the first batch found may exceed them)."""
    topics = []
    total = 0
    failed = False
    for name, topic_id, wanted in plan:
        answers = []
        for want in wanted:
            answer = read_one(want, max_bytes - total, total == 0, committed)
            failed = failed or answer.error_code != ErrorCode.none
            total += answer.records.size if answer.records is not None else 0
            answers.append(answer)
        topics.append(FetchedTopic(name, topic_id, answers))
    return topics, total, failed


def read_one(want: Wanted, bytes_left: int, first: bool, committed: bool) -> FetchedPartition:
    partition = want.partition
    if partition is None:
        return FetchedPartition(want.index, want.missing_error)
    high_watermark = partition.high_watermark
    answer = FetchedPartition(
        want.index,
        high_watermark=high_watermark,
        last_stable_offset=high_watermark,
        log_start_offset=partition.log_start_offset,
        aborted_transactions=[] if committed else None,
    )
    limit = min(want.partition_max_bytes, bytes_left)
    if limit <= 0 and not first:
        return answer
    try:
        answer.records = partition.read(want.fetch_offset, max(limit, 0), high_watermark, min_one_batch=first)
    except StorageError as error:
        answer.error_code = error_code_for(error)
    return answer


async def long_poll(
    version: int, plan: list[tuple[str, uuid.UUID, list[Wanted]]], request: Any, committed: bool, max_wait_s: float
) -> list[bytes | Sendable]:
    """Waits until `min_bytes` are readable or `max_wait` passes, woken by high-watermark moves."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    partitions = [w.partition for _, _, wanted in plan for w in wanted if w.partition is not None]
    while True:
        waiter: asyncio.Future[None] = loop.create_future()
        for partition in partitions:
            partition.watch(waiter)
        try:
            await asyncio.wait((waiter,), timeout=max(0.0, deadline - loop.time()))
        finally:
            for partition in partitions:
                partition.unwatch(waiter)
        topics, total, failed = collect(plan, request.max_bytes, committed)
        if total >= request.min_bytes or failed or loop.time() >= deadline:
            return encode_fetch_response(version, topics)
