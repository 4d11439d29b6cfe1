"""Transactions in the native API: atomic appends to several partitions, with consumer offsets.

The same transaction coordinator as the server's, through the broker core: a `Transaction`
gets its producer id and epoch from InitProducerId (fencing any older producer of the same
transactional id, and aborting what it left open), adds each partition before its first append
(AddPartitionsToTxn), appends transactional batches with the idempotent producer's sequences,
puts offsets in the transaction (AddOffsetsToTxn + TxnOffsetCommit) and ends with EndTxn.
`commit` and `abort` return once every marker is durable, so a read_committed reader of this
process sees the outcome at once. A Kafka client sees the same transaction as any other.

    txn = log.transaction("copier")            # fences an older producer of "copier"
    with txn:                                  # begin; commit on leaving, abort on an exception
        txn.append("out", b"value", partition=0)
        txn.commit_offsets("group", {("in", 0): 42})
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from tidelog import limits
from tidelog.coordinator.group.shard import TxnCommitRequest
from tidelog.core.types import Acks
from tidelog.embedded.appender import AppendResult
from tidelog.embedded.log import AppendRecord, Bytesish, RecordLike
from tidelog.errors import KafkaError
from tidelog.protocol.record_batch import build_batch

if TYPE_CHECKING:
    from tidelog.embedded.log import AsyncLog, Log, _Handle

INT32_MAX = 2**31 - 1
DEFAULT_TIMEOUT_MS = 60_000


class TransactionStateError(RuntimeError):
    """A transaction method called out of order (append before begin, begin twice)."""


class _Session:
    """A transactional producer's state and steps; every step runs on the broker's loop."""

    def __init__(self, handle: _Handle, transactional_id: str, timeout_ms: int) -> None:
        if not isinstance(transactional_id, str) or not transactional_id:
            raise ValueError("a transactional id is a non-empty str")
        self.handle = handle
        self.transactional_id = transactional_id
        self.timeout_ms = timeout_ms
        self.producer_id = -1
        self.epoch = -1
        self.sequences: dict[tuple[str, int], int] = {}
        self.partitions: set[tuple[str, int]] = set()
        self.groups: set[str] = set()
        self.open = False

    @property
    def broker(self) -> Any:
        return self.handle._home.broker

    async def _retrying(self, step: Any, what: str) -> Any:
        """Runs `step` again while the coordinator answers a retriable code (bounded)."""
        deadline = time.monotonic() + limits.EMBEDDED_COORDINATOR_WAIT_S
        retriable = (ErrorCode.concurrent_transactions, ErrorCode.coordinator_load_in_progress)
        while True:
            answer = await step()
            error = answer.error if hasattr(answer, "error") else answer
            if error not in retriable or time.monotonic() > deadline:
                if error != ErrorCode.none:
                    raise KafkaError.of(error, f"{what} of transactional id {self.transactional_id!r}")
                return answer
            await asyncio.sleep(limits.EMBEDDED_COORDINATOR_RETRY_S)

    async def init(self) -> None:
        answer = await self._retrying(
            lambda: self.broker.init_producer_id(self.transactional_id, self.timeout_ms), "InitProducerId"
        )
        self.producer_id, self.epoch = answer.producer_id, answer.producer_epoch
        self.sequences.clear()

    def begin(self) -> None:
        if self.open:
            raise TransactionStateError("a transaction is open already")
        self.open = True
        self.partitions.clear()
        self.groups.clear()

    def _check_open(self) -> None:
        self.handle._check_open()
        if not self.open:
            raise TransactionStateError("no transaction is open: call begin() (or use `with`)")

    async def append_many(self, topic: str, records: Iterable[RecordLike], partition: int | None) -> list[AppendResult]:
        self._check_open()
        shares = self.handle._split(topic, records, partition)
        new = [(topic, target) for target, _ in shares if (topic, target) not in self.partitions]
        if new:
            errors = await self.broker.add_partitions_to_txn(self.transactional_id, self.producer_id, self.epoch, new)
            for (name, index), error in errors.items():
                if error != ErrorCode.none:
                    raise KafkaError.of(error, f"adding {name}-{index} to the transaction")
            self.partitions.update(new)
        results = []
        for target, inputs in shares:
            sequence = self.sequences.get((topic, target), 0)
            batch = build_batch(
                inputs,
                producer_id=self.producer_id,
                producer_epoch=self.epoch,
                base_sequence=sequence,
                transactional=True,
            )
            outcome = self.broker.produce([(topic, target, batch)], Acks.ALL, transactional_id=self.transactional_id)
            result = (await outcome.durable())[0]
            if result.error != ErrorCode.none:
                raise KafkaError.of(result.error, result.message or f"appending to {topic}-{target}")
            self.sequences[(topic, target)] = (sequence + len(inputs)) & INT32_MAX
            last = result.base_offset + len(inputs) - 1
            results.append(AppendResult(topic, target, result.base_offset, last, result.log_append_time_ms))
        return results

    async def commit_offsets(self, group_id: str, offsets: Mapping[tuple[str, int], int], metadata: str) -> None:
        self._check_open()
        if group_id not in self.groups:
            await self._retrying(
                lambda: self.broker.add_offsets_to_txn(self.transactional_id, self.producer_id, self.epoch, group_id),
                "AddOffsetsToTxn",
            )
            self.groups.add(group_id)
        wanted: dict[tuple[str, int], tuple[int, int, str | None, int]] = {
            (t, p): (int(o), -1, metadata, -1) for (t, p), o in offsets.items()
        }
        request = TxnCommitRequest(self.transactional_id, group_id, self.producer_id, self.epoch, -1, "", None, wanted)
        errors = await self.broker.txn_offset_commit(request)
        for (topic, index), error in errors.items():
            if error != ErrorCode.none:
                raise KafkaError.of(error, f"committing {group_id} {topic}-{index} in the transaction")

    async def end(self, commit: bool) -> None:
        self._check_open()
        self.open = False
        if not self.partitions and not self.groups:
            return  # nothing was added: Kafka's clients send no EndTxn either
        await self._retrying(
            lambda: self.broker.end_txn(self.transactional_id, self.producer_id, self.epoch, commit), "EndTxn"
        )
        await self.broker.transactions.completed(self.transactional_id)


class Transaction:
    """A transactional producer of a `Log` (see the module's text)."""

    def __init__(self, log: Log, transactional_id: str, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
        self.log = log
        self._session = _Session(log, transactional_id, timeout_ms)
        log._home.call(self._session.init)

    @property
    def producer_id(self) -> int:
        return self._session.producer_id

    @property
    def producer_epoch(self) -> int:
        return self._session.epoch

    def begin(self) -> None:
        self._session.begin()

    def append_many(
        self, topic: str, records: Iterable[RecordLike], *, partition: int | None = None
    ) -> list[AppendResult]:
        """Appends in the transaction (durable, not visible to read_committed until commit)."""
        return self.log._home.call(lambda: self._session.append_many(topic, records, partition))

    def append(self, topic: str, value: Bytesish | None, **fields: Any) -> AppendResult:
        partition = fields.pop("partition", None)
        return self.append_many(topic, [AppendRecord(value, **fields)], partition=partition)[0]

    def commit_offsets(self, group_id: str, offsets: Mapping[tuple[str, int], int], *, metadata: str = "") -> None:
        """The group's offsets, committed with the transaction (visible once it commits)."""
        self.log._home.call(lambda: self._session.commit_offsets(group_id, offsets, metadata))

    def commit(self) -> None:
        self.log._home.call(lambda: self._session.end(True))

    def abort(self) -> None:
        self.log._home.call(lambda: self._session.end(False))

    def __enter__(self) -> Transaction:
        self.begin()
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if not self._session.open:
            return
        if kind is None:
            self.commit()
        else:
            self.abort()


class AsyncTransaction:
    """`Transaction` for asyncio: `txn = await alog.transaction(id)`; `async with txn: ...`."""

    def __init__(self, log: AsyncLog, transactional_id: str, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
        self.log = log
        self._session = _Session(log, transactional_id, timeout_ms)

    async def init(self) -> AsyncTransaction:
        await self.log._home.call_async(self._session.init)
        return self

    @property
    def producer_id(self) -> int:
        return self._session.producer_id

    @property
    def producer_epoch(self) -> int:
        return self._session.epoch

    def begin(self) -> None:
        self._session.begin()

    async def append_many(
        self, topic: str, records: Iterable[RecordLike], *, partition: int | None = None
    ) -> list[AppendResult]:
        return await self.log._home.call_async(lambda: self._session.append_many(topic, records, partition))

    async def append(self, topic: str, value: Bytesish | None, **fields: Any) -> AppendResult:
        partition = fields.pop("partition", None)
        return (await self.append_many(topic, [AppendRecord(value, **fields)], partition=partition))[0]

    async def commit_offsets(
        self, group_id: str, offsets: Mapping[tuple[str, int], int], *, metadata: str = ""
    ) -> None:
        await self.log._home.call_async(lambda: self._session.commit_offsets(group_id, offsets, metadata))

    async def commit(self) -> None:
        await self.log._home.call_async(lambda: self._session.end(True))

    async def abort(self) -> None:
        await self.log._home.call_async(lambda: self._session.end(False))

    async def __aenter__(self) -> AsyncTransaction:
        self.begin()
        return self

    async def __aexit__(self, kind: object, *_: object) -> None:
        if not self._session.open:
            return
        if kind is None:
            await self.commit()
        else:
            await self.abort()
