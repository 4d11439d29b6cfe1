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


class Appender:
    """On the home loop only."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._pending: dict[tuple[str, int, int], list[_Call]] = {}
        self._scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()

    def append(
        self, topic: str, partition: int, records: Sequence[RecordInput], acks: int
    ) -> asyncio.Future[AppendResult]:
        """Queues one call's records for the end of this loop turn."""
        loop = asyncio.get_running_loop()
        size = record_size(records[0]) if len(records) == 1 else sum(record_size(r) for r in records)
        call = _Call(records, size, loop.create_future())
        key = (topic, partition, acks)
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = [call]
        else:
            pending.append(call)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return call.answer

    def append_batch(
        self, topic: str, partition: int, batch: bytes, acks: int, count: int
    ) -> asyncio.Future[AppendResult]:
        """Appends a batch as built (idempotent producers) on its own, now."""
        answer: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._produce(topic, partition, acks, [(batch, [_Call((), 0, answer)], [count])])
        return answer

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for (topic, partition, acks), calls in pending.items():
            meta = self.broker.topic(topic)
            limit = limits.EMBEDDED_BATCH_BYTES_MAX
            if meta is not None:
                limit = min(limit, self.broker.logs.topic_config(topic).max_message_bytes)
            limit -= HEADER_BYTES
            batches = []
            for group in _groups(calls, limit):
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
            for call, count in zip(calls, counts, strict=True):
                appended = AppendResult(
                    topic, partition, offset, offset + count - 1, result.log_append_time_ms, result.duplicate
                )
                _settle(call.answer, appended)
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
