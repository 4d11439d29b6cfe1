"""Produce v3-v12: decode, `Broker.produce`, encode. v12 is TV2's (KIP-890 part 2): the
partitions of a transactional request join the transaction implicitly
(`Broker.produce_adding_partitions`).

acks=0 gets no answer (a refused append closes the connection instead, as in Kafka); acks=1 is
answered once the batches are in the log; acks=-1 once they are durable (the core decides).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidelog.core.stats import record_errors
from tidelog.core.types import Acks, ProduceResult
from tidelog.protocol.framing import RequestHeader
from tidelog.protocol.produce import PartitionResult, encode_produce_response
from tidelog.server.handlers.common import CloseConnection

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from tidelog.server.context import ServerContext


TV2_MIN_VERSION = 12
# From v11 a transactional batch the transaction does not cover is refused TRANSACTION_ABORTABLE
# (KIP-1050: the client aborts and goes on) where older versions get INVALID_TXN_STATE (fatal).
TRANSACTION_ABORTABLE_MIN_VERSION = 11


def handle(server: ServerContext, header: RequestHeader, request: Any) -> Awaitable[bytes | None] | bytes | None:
    entries = [(t.name, p.index, p.records) for t in request.topic_data for p in t.partition_data]
    if header.api_version >= TV2_MIN_VERSION and request.transactional_id:
        return adding_partitions(server, header.api_version, request, entries)
    abortable = header.api_version >= TRANSACTION_ABORTABLE_MIN_VERSION
    outcome = server.broker.produce(
        entries, request.acks, transactional_id=request.transactional_id, abortable=abortable
    )
    if request.acks == Acks.NONE:
        if outcome.any_error():
            raise CloseConnection("produce with acks=0 failed")
        return None
    if outcome.waits:
        return answer_when_durable(header.api_version, request, outcome)
    return encode(header.api_version, request, outcome.results)


async def adding_partitions(server: ServerContext, version: int, request: Any, entries: Any) -> bytes | None:
    outcome = await server.broker.produce_adding_partitions(entries, request.acks, request.transactional_id)
    if request.acks == Acks.NONE:
        if outcome.any_error():
            raise CloseConnection("produce with acks=0 failed")
        return None
    return encode(version, request, await outcome.durable())


async def answer_when_durable(version: int, request: Any, outcome: Any) -> bytes:
    return encode(version, request, await outcome.durable())


def encode(version: int, request: Any, results: list[ProduceResult]) -> bytes:
    record_errors(r.error for r in results)
    answers = iter(results)
    topics = []
    for topic in request.topic_data:
        partitions = []
        for _ in topic.partition_data:
            r = next(answers)
            partitions.append(
                PartitionResult(
                    r.partition,
                    r.error,
                    r.base_offset,
                    r.log_append_time_ms,
                    r.log_start_offset,
                    r.message,
                    list(r.record_errors),
                )
            )
        topics.append((topic.name, partitions))
    return encode_produce_response(version, topics)
