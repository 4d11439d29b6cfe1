"""Fetch: whole batches below the high watermark (read_uncommitted) or the last stable offset
(read_committed), within the request's limits, waiting (long poll) for `min_bytes`.

KIP-74's limits: partitions are read in request order; each gets at most its `max_bytes` and the
request at most its `max_bytes`, except that the first batch found is returned whole even when it
is larger, so a consumer can always make progress.

Only verified batches are served: a read that reaches bytes of a segment whose verification pass
(started by that read, on the engine's threads) has not checked them yet is *pending*; the long
poll reads it again every `FETCH_VERIFY_POLL_S` until it is served or the wait is over. The event
loop never waits for the disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from tidelog import limits
from tidelog.core.errors import error_code_for
from tidelog.core.partition import Partition
from tidelog.core.types import FetchedData, FetchPartition, IsolationLevel
from tidelog.storage import NotVerifiedError, StorageError

ZERO_UUID_INT = 0


@dataclass(slots=True)
class Wanted:
    """One partition of a fetch, resolved to this broker's partition (None: not here)."""

    request: FetchPartition
    partition: Partition | None
    answer: FetchedData
    # The last read reached bytes not verified yet: read it again shortly.
    pending: bool = False


def collect(plan: Sequence[Wanted], max_bytes: int, isolation: IsolationLevel) -> tuple[int, bool]:
    """Reads every partition of the plan into its answer; returns (bytes read, any error)."""
    total = 0
    failed = False
    for want in plan:
        read_one(want, max_bytes - total, total == 0, isolation)
        answer = want.answer
        failed = failed or answer.error != ErrorCode.none
        total += answer.records.size if answer.records is not None else 0
    return total, failed


def read_one(want: Wanted, bytes_left: int, first: bool, isolation: IsolationLevel) -> None:
    partition, answer = want.partition, want.answer
    want.pending = False
    if partition is None:
        return
    if not partition.is_leader:
        answer.error = ErrorCode.not_leader_or_follower
        return
    offsets = partition.offsets()
    committed = isolation == IsolationLevel.READ_COMMITTED
    answer.high_watermark = offsets.high_watermark
    answer.last_stable_offset = offsets.last_stable_offset
    answer.log_start_offset = offsets.log_start_offset
    answer.aborted_transactions = [] if committed else None
    answer.records = None
    limit = min(want.request.max_bytes, bytes_left)
    if limit <= 0 and not first:
        return
    upper_bound = offsets.last_stable_offset if committed else offsets.high_watermark
    try:
        answer.records = partition.read(
            want.request.fetch_offset, max(limit, 0), upper_bound, min_one_batch=first, wait=False
        )
    except NotVerifiedError:
        want.pending = True
        return
    except StorageError as error:
        answer.error = error_code_for(error)
        return
    if committed and answer.records is not None:
        # Kafka's rule: the aborted transactions that overlap the returned range.
        end = answer.records.last_offset + 1
        answer.aborted_transactions = partition.aborted_transactions(want.request.fetch_offset, end)


def moved(want: Wanted, isolation: IsolationLevel) -> bool:
    """Whether the partition's readable end passed what the last collect answered."""
    assert want.partition is not None
    if isolation == IsolationLevel.READ_COMMITTED:
        return want.partition.last_stable_offset != want.answer.last_stable_offset
    return want.partition.high_watermark != want.answer.high_watermark


async def long_poll(
    plan: Sequence[Wanted], max_bytes: int, min_bytes: int, isolation: IsolationLevel, max_wait_s: float
) -> list[FetchedData]:
    """Waits until `min_bytes` are readable or `max_wait` passes, woken by high-watermark moves."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    watched = [w for w in plan if w.partition is not None]
    partitions = [w.partition for w in watched if w.partition is not None]
    while True:
        waiter: asyncio.Future[None] = loop.create_future()
        for partition in partitions:
            partition.watch(waiter)
        try:
            # Registered first, then compared with what the last collect saw: a move in between
            # is not missed. A pending read (verification under way) is tried again soon.
            timeout = max(0.0, deadline - loop.time())
            if any(w.pending for w in watched):
                timeout = min(timeout, limits.FETCH_VERIFY_POLL_S)
            if not any(moved(w, isolation) for w in watched):
                await asyncio.wait((waiter,), timeout=timeout)
        finally:
            for partition in partitions:
                partition.unwatch(waiter)
        total, failed = collect(plan, max_bytes, isolation)
        if total >= min_bytes or failed or loop.time() >= deadline:
            return [w.answer for w in plan]
