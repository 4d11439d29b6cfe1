"""Produce v3-v11: validate and append one batch per partition; answer per `acks`.

acks=0 gets no answer (an error closes the connection instead, as in Kafka); acks=1 is answered
once the batch is in the log; acks=-1 once it is durable (group commit), unless
`tidelog.flush.before.ack=false`. Appends run inline; only the durable wait is asynchronous.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog.protocol.framing import RequestHeader
from tidelog.protocol.produce import PartitionResult, encode_produce_response
from tidelog.protocol.record_batch import LOG_OVERHEAD, batch_length_of
from tidelog.server.handlers.common import CloseConnection, error_code_for
from tidelog.storage import StorageError

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from tidelog.server.broker import Broker

ACKS_NONE, ACKS_LEADER, ACKS_ALL = 0, 1, -1

Results = list[tuple[str, list[PartitionResult]]]


def handle(broker: Broker, header: RequestHeader, request: Any) -> Awaitable[bytes | None] | bytes | None:
    if request.acks not in (ACKS_NONE, ACKS_LEADER, ACKS_ALL):
        refused = [
            (t.name, [PartitionResult(p.index, ErrorCode.invalid_required_acks) for p in t.partition_data])
            for t in request.topic_data
        ]
        return encode_produce_response(header.api_version, refused)
    results: Results = []
    durable: list[tuple[PartitionResult, asyncio.Future[None]]] = []
    for topic in request.topic_data:
        answers = []
        for data in topic.partition_data:
            answer, future = append_one(broker, topic.name, data.index, data.records, request.acks == ACKS_ALL)
            answers.append(answer)
            if future is not None:
                durable.append((answer, future))
        results.append((topic.name, answers))
    if request.acks == ACKS_NONE:
        if any(a.error_code != ErrorCode.none for _, answers in results for a in answers):
            raise CloseConnection("produce with acks=0 failed")
        return None
    if durable:
        return answer_when_durable(header.api_version, results, durable)
    return encode_produce_response(header.api_version, results)


async def answer_when_durable(
    version: int, results: Results, durable: list[tuple[PartitionResult, asyncio.Future[None]]]
) -> bytes:
    for answer, future in durable:
        try:
            await future
        except StorageError as error:  # the fsync failed: nothing of this append is acknowledged
            answer.error_code, answer.base_offset, answer.error_message = error_code_for(error), -1, str(error)
    return encode_produce_response(version, results)


def refusal(records: bytes | None) -> tuple[ErrorCode, str] | None:
    """Checks Kafka makes on the request before the log sees the bytes: one whole batch.
    (A batch cut short is INVALID_RECORD here, as in Kafka; a bad CRC is the log's CORRUPT_MESSAGE.)"""
    if not records:
        return ErrorCode.invalid_record, "no record batch"
    length = batch_length_of(records)
    if length is not None:
        if 0 <= length and LOG_OVERHEAD + length < len(records):
            return ErrorCode.invalid_record, "produce v3+ carries exactly one record batch per partition"
        if 0 <= length and LOG_OVERHEAD + length > len(records):
            return ErrorCode.invalid_record, "the record batch is cut short"
    return None


def append_one(
    broker: Broker, topic: str, index: int, records: bytes | None, acks_all: bool
) -> tuple[PartitionResult, asyncio.Future[None] | None]:
    partition = broker.partition(topic, index)
    if partition is None:
        return PartitionResult(index, ErrorCode.unknown_topic_or_partition), None
    if broker.is_internal(topic):  # only the coordinators write there, as in Kafka
        return PartitionResult(
            index, ErrorCode.invalid_topic_exception, error_message=f"cannot append to internal topic {topic}"
        ), None
    refused = refusal(records)
    if refused is not None:
        return PartitionResult(index, refused[0], error_message=refused[1]), None
    try:
        answer, durable = partition.produce(records, acks_all)  # type: ignore[arg-type]
    except StorageError as error:
        return PartitionResult(index, error_code_for(error), error_message=str(error)), None
    return PartitionResult(
        index, ErrorCode.none, answer.first_offset, answer.log_append_time_ms, answer.log_start_offset
    ), durable
