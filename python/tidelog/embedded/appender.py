"""Appends from the native API: batched per partition within one turn of the event loop.

Appends made while the loop runs other work (hundreds of asyncio writers, or threads handing
appends over) are joined into one record batch per partition and durability level, written by
one `Broker.produce` call, and answered together (one group commit for all of them with
`durability="fsync"`). Each call's records stay contiguous and in call order; a call is never
split. A batch refused for its content (a bad timestamp, a record too large) is retried call by
call, so one bad call fails alone.

Idempotent appends carry their own producer id and sequence and are never joined.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import NamedTuple

from kio.schema.errors import ErrorCode

from tidelog import limits
from tidelog.core.broker import Broker
from tidelog.core.types import Acks, ProduceOutcome, ProduceResult
from tidelog.errors import KafkaError
from tidelog.protocol.record_batch import HEADER_BYTES, RecordInput, build_batch

log = logging.getLogger(__name__)

# Refusals that depend on the content of one call's records: retried call by call.
CONTENT_ERRORS = frozenset(
    {
        ErrorCode.invalid_timestamp,
        ErrorCode.message_too_large,
        ErrorCode.record_list_too_large,
        ErrorCode.invalid_record,
        ErrorCode.corrupt_message,
    }
)


class AppendResult(NamedTuple):
    """Where a call's records went: `base_offset` to `last_offset` in one partition."""

    topic: str
    partition: int
    base_offset: int
    last_offset: int
    log_append_time_ms: int = -1
    duplicate: bool = False

    @property
    def offset(self) -> int:
        """The offset of the first (for a single record, the only) record."""
        return self.base_offset


class _Call:
    """One call's records waiting for the end of the loop turn, and its answer."""

    __slots__ = ("records", "size", "answer")

    def __init__(self, records: Sequence[RecordInput], size: int, answer: asyncio.Future[AppendResult]) -> None:
        self.records = records
        self.size = size
        self.answer = answer


# A batch to write: its bytes, the calls it holds, and each call's record count.
Batch = tuple[bytes, list[_Call], list[int]]


def record_size(record: RecordInput) -> int:
    """An upper bound of a record's encoded size (varints at their widest)."""
    _, key, value, headers = record
    size = RECORD_OVERHEAD + (len(key) if key is not None else 0) + (len(value) if value is not None else 0)
    for name, header_value in headers:
        size += RECORD_OVERHEAD + len(name) * 4 + len(header_value or b"")
    return size


RECORD_OVERHEAD = limits.RECORD_OVERHEAD_BYTES_MAX


class _Pending:
    """The calls to one (topic, partition, acks) waiting for the end of the loop turn, and an
    upper bound of their encoded size."""

    __slots__ = ("calls", "size")

    def __init__(self, call: _Call) -> None:
        self.calls = [call]
        self.size = call.size


class Appender:
    """On the home loop only."""

    def __init__(self, broker: Broker, loop: asyncio.AbstractEventLoop) -> None:
        self.broker = broker
        self.loop = loop
        self._pending: dict[tuple[str, int, int], _Pending] = {}
        self._scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._limits: dict[str, tuple[int, int]] = {}  # topic -> (metadata epoch, batch bytes max)

    def append(
        self, topic: str, partition: int, records: Sequence[RecordInput], acks: int
    ) -> asyncio.Future[AppendResult]:
        """Queues one call's records for the end of this loop turn."""
        size = record_size(records[0]) if len(records) == 1 else sum(record_size(r) for r in records)
        call = _Call(records, size, self.loop.create_future())
        key = (topic, partition, acks)
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = _Pending(call)
        else:
            pending.calls.append(call)
            pending.size += size
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._flush)
        return call.answer

    def append_batch(
        self, topic: str, partition: int, batch: bytes, acks: int, count: int
    ) -> asyncio.Future[AppendResult]:
        """Appends a batch as built (idempotent producers) on its own, now."""
        answer: asyncio.Future[AppendResult] = self.loop.create_future()
        self._produce(topic, partition, acks, [(batch, [_Call((), 0, answer)], [count])])
        return answer

    def _batch_bytes_max(self, topic: str) -> int:
        """What the records of one joined batch may take: the embedded cap, and never more than
        the topic's max.message.bytes (looked up again when a topic changes)."""
        epoch = self.broker.metadata_epoch
        known = self._limits.get(topic)
        if known is not None and known[0] == epoch:
            return known[1]
        limit = limits.EMBEDDED_BATCH_BYTES_MAX
        if self.broker.topic(topic) is not None:
            limit = min(limit, self.broker.logs.topic_config(topic).max_message_bytes)
        limit -= HEADER_BYTES
        self._limits[topic] = (epoch, limit)
        return limit

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for (topic, partition, acks), waiting in pending.items():
            calls = waiting.calls
            limit = self._batch_bytes_max(topic)
            batches: list[Batch] = []
            if waiting.size <= limit:  # the usual case: everything in one batch
                groups = [calls]
            else:
                groups = _groups(calls, limit)
            for group in groups:
                if len(group) == 1:
                    records = group[0].records
                else:
                    records = [record for call in group for record in call.records]
                batches.append((build_batch(records), group, [len(call.records) for call in group]))
            self._produce(topic, partition, acks, batches)

    def _produce(self, topic: str, partition: int, acks: int, batches: list[Batch]) -> None:
        outcome = self.broker.produce([(topic, partition, batch) for batch, _, _ in batches], acks)
        if acks == Acks.ALL and outcome.waits:
            task = asyncio.ensure_future(self._answer_when_durable(topic, partition, acks, batches, outcome))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            return
        self._answer(topic, partition, acks, batches, outcome.results)

    async def _answer_when_durable(
        self,
        topic: str,
        partition: int,
        acks: int,
        batches: list[Batch],
        outcome: ProduceOutcome,
    ) -> None:
        results = await outcome.durable()
        self._answer(topic, partition, acks, batches, results)

    def _answer(
        self,
        topic: str,
        partition: int,
        acks: int,
        batches: list[Batch],
        results: list[ProduceResult],
    ) -> None:
        for (_, calls, counts), result in zip(batches, results, strict=True):
            if result.error != ErrorCode.none:
                if result.error in CONTENT_ERRORS and len(calls) > 1:
                    self._retry_alone(topic, partition, acks, calls)
                    continue
                error = KafkaError.of(result.error, result.message)
                for call in calls:
                    _settle(call.answer, error=error)
                if acks == Acks.NONE:
                    log.error("append to %s-%d with durability none failed: %s", topic, partition, error)
                continue
            offset = result.base_offset
            append_time, duplicate = result.log_append_time_ms, result.duplicate
            for call, count in zip(calls, counts, strict=True):
                answer = call.answer
                if not answer.done():  # (cancelled by its caller meanwhile)
                    answer.set_result(
                        AppendResult(topic, partition, offset, offset + count - 1, append_time, duplicate)
                    )
                offset += count

    def _retry_alone(self, topic: str, partition: int, acks: int, calls: list[_Call]) -> None:
        batches = [(build_batch(call.records), [call], [len(call.records)]) for call in calls]
        self._produce(topic, partition, acks, batches)

    async def drain(self) -> None:
        """Waits for appends in flight (before the broker closes)."""
        if self._scheduled:
            await asyncio.sleep(0)
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)


def _groups(calls: list[_Call], limit: int) -> list[list[_Call]]:
    """Consecutive calls joined while they fit in `limit` bytes; a larger call goes alone."""
    groups: list[list[_Call]] = []
    size = 0
    for call in calls:
        if groups and size + call.size <= limit:
            groups[-1].append(call)
            size += call.size
        else:
            groups.append([call])
            size = call.size
    return groups


def _settle(
    answer: asyncio.Future[AppendResult], result: AppendResult | None = None, error: BaseException | None = None
) -> None:
    if answer.done():
        return
    if error is not None:
        answer.set_exception(error)
        answer.exception()  # retrieved: a `durability="none"` call never looks
    else:
        answer.set_result(result)  # type: ignore[arg-type]
