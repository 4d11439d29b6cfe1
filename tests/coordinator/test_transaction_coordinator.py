"""The transaction coordinator in process, for what needs a precise interleaving or a state
clients cannot reach quickly: TV2's implicit adds of one transactional id run one at a time, also
when a new request comes just as one ends (a produce of the same producer could else append
before an earlier one: OUT_OF_ORDER_SEQUENCE, seen with Java's ProducerPerformance); an EndTxn
right behind an AddPartitionsToTxn is handled after it; a Prepare state found at load gets its
markers; an exhausted epoch rotates the producer id; idle ids expire."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from tests.core_harness import running_broker
from tidelog.coordinator.runtime import CoordinatorResult
from tidelog.coordinator.transaction import records
from tidelog.coordinator.transaction.coordinator import TransactionCoordinator
from tidelog.coordinator.transaction.records import TxnState
from tidelog.coordinator.transaction.shard import EPOCH_EXHAUSTED_AT
from tidelog.core.broker import Broker
from tidelog.protocol.record_batch import build_batch


def unused(*_: object) -> object:
    raise AssertionError("not used here")


def test_implicit_adds_of_one_id_never_overlap() -> None:
    async def main() -> list[str]:
        coordinator = TransactionCoordinator(unused, unused, unused, 60_000, 60_000)  # type: ignore[arg-type]
        inside: list[str] = []
        order: list[str] = []
        release = {name: asyncio.Event() for name in "ABC"}

        async def user(name: str) -> None:
            async with coordinator.serialized("tid"):
                inside.append(name)
                assert len(inside) == 1, f"{inside} inside at once"
                order.append(name)
                await release[name].wait()
                inside.remove(name)

        a = asyncio.ensure_future(user("A"))
        await asyncio.sleep(0)
        b = asyncio.ensure_future(user("B"))
        await asyncio.sleep(0)
        release["A"].set()
        await a  # A is out, B is woken but has not run yet: C comes now
        c = asyncio.ensure_future(user("C"))
        await asyncio.sleep(0.01)
        release["B"].set()
        release["C"].set()
        await asyncio.gather(b, c)
        assert not coordinator._locks, "no lock kept once nobody holds or waits"
        return order

    assert asyncio.run(main()) == ["A", "B", "C"]


async def open_transaction(broker: Broker, tid: str) -> tuple[int, int]:
    """`tid` with a transaction open on t-0 holding one record."""
    if broker.topic("t") is None:
        broker.create_topic("t", 1)
    init = await broker.init_producer_id(tid, 60_000)
    assert init.error == ErrorCode.none
    pid, epoch = init.producer_id, init.producer_epoch
    assert await broker.add_partitions_to_txn(tid, pid, epoch, [("t", 0)]) == {("t", 0): ErrorCode.none}
    batch = build_batch(
        [(0, None, b"v", ())], producer_id=pid, producer_epoch=epoch, base_sequence=0, transactional=True
    )
    (result,) = await broker.produce([("t", 0, batch)], -1, transactional_id=tid).durable()
    assert result.error == ErrorCode.none
    return pid, epoch


def state_of(broker: Broker, tid: str) -> TxnState | None:
    _, metadata = broker.transactions.describe(tid)
    return None if metadata is None else metadata.state


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def test_an_end_txn_sent_right_behind_an_add_partitions_is_handled_after_it(tmp_path: Path) -> None:
    """librdkafka sends AddPartitionsToTxn and, on abort_transaction, EndTxn right behind it on
    the same connection, without waiting for the first answer. Kafka handles a connection's
    requests one at a time, in order; here the add waited for the previous transaction's markers
    and the EndTxn overtook it: INVALID_TXN_STATE for an abort of a transaction that did not
    exist yet, fatal in librdkafka (seen in test_pauses.py on a loaded machine)."""

    async def main() -> None:
        async with running_broker(tmp_path, transaction_state_log_num_partitions=2) as broker:
            pid, epoch = await open_transaction(broker, "pipelined")
            complete = broker.transactions._complete

            async def slow_markers(*args: Any) -> None:
                await asyncio.sleep(0.2)
                await complete(*args)

            broker.transactions._complete = slow_markers  # type: ignore[method-assign]
            assert (await broker.end_txn("pipelined", pid, epoch, commit=True)).error == ErrorCode.none
            assert state_of(broker, "pipelined") is TxnState.PREPARE_COMMIT, "the markers are still going out"
            # Dispatched in this order, as two pipelined requests of one connection are.
            add = asyncio.ensure_future(broker.add_partitions_to_txn("pipelined", pid, epoch, [("t", 0)]))
            abort = asyncio.ensure_future(broker.end_txn("pipelined", pid, epoch, commit=False))
            assert await add == {("t", 0): ErrorCode.none}
            assert (await abort).error == ErrorCode.none
            await broker.transactions.completed("pipelined")
            assert state_of(broker, "pipelined") is TxnState.COMPLETE_ABORT

    asyncio.run(main())


def test_a_coordinator_that_loads_a_prepare_state_writes_its_markers(tmp_path: Path) -> None:
    """The broker stops between PrepareCommit and the markers: the next one writes them."""

    async def main() -> None:
        async with running_broker(tmp_path, transaction_state_log_num_partitions=2) as broker:
            pid, epoch = await open_transaction(broker, "prepared")
            broker.transactions._prepared = lambda *_: None  # type: ignore[method-assign]  # no markers
            assert (await broker.end_txn("prepared", pid, epoch, commit=True)).error == ErrorCode.none
            assert state_of(broker, "prepared") is TxnState.PREPARE_COMMIT
            partition = broker.partition("t", 0)
            assert partition is not None and partition.last_stable_offset == 0, "no marker yet"
        async with running_broker(tmp_path, transaction_state_log_num_partitions=2) as broker:
            await until(lambda: state_of(broker, "prepared") is TxnState.COMPLETE_COMMIT)
            partition = broker.partition("t", 0)
            assert partition is not None
            await until(lambda: partition.last_stable_offset == partition.log_end_offset == 2)

    asyncio.run(main())


def test_an_exhausted_epoch_moves_to_a_new_producer_id(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_broker(tmp_path, transaction_state_log_num_partitions=2) as broker:
            init = await broker.init_producer_id("worn", 60_000)
            _, metadata = broker.transactions.describe("worn")
            assert metadata is not None
            worn = dataclasses.replace(metadata.stored, producer_epoch=EPOCH_EXHAUSTED_AT)
            record = (records.key_bytes("worn"), records.value_bytes(worn))
            partition = broker.transactions.partition_for("worn")
            await broker.transactions.runtime.write(partition, lambda _: CoordinatorResult([record], None))
            fresh = await broker.init_producer_id("worn", 60_000)
            assert fresh.error == ErrorCode.none
            assert fresh.producer_id != init.producer_id and fresh.producer_epoch == 0
            _, metadata = broker.transactions.describe("worn")
            assert metadata is not None and metadata.stored.previous_producer_id == init.producer_id
            # The client that missed that answer retries with its old id and exhausted epoch.
            retried = await broker.init_producer_id("worn", 60_000, (init.producer_id, EPOCH_EXHAUSTED_AT))
            assert (retried.error, retried.producer_id, retried.producer_epoch) == (
                ErrorCode.none,
                fresh.producer_id,
                0,
            )

    asyncio.run(main())


def test_idle_transactional_ids_expire_but_open_ones_stay(tmp_path: Path) -> None:
    async def main() -> None:
        settings = {
            "transaction_state_log_num_partitions": 2,
            "transactional_id_expiration_ms": 200,
            "transaction_remove_expired_transaction_cleanup_interval_ms": 50,
        }
        async with running_broker(tmp_path, **settings) as broker:
            assert (await broker.init_producer_id("idle", 60_000)).error == ErrorCode.none
            await open_transaction(broker, "busy")
            await until(lambda: state_of(broker, "idle") is None)
            assert state_of(broker, "busy") is TxnState.ONGOING
        async with running_broker(tmp_path, **settings) as broker:  # the tombstone is durable
            await until(lambda: broker.transactions.loaded())
            assert state_of(broker, "idle") is None

    asyncio.run(main())


LIBS = Path(__file__).parents[2] / ".cache" / "kafka" / "libs"


@pytest.mark.skipif(
    shutil.which("java") is None or not any(LIBS.glob("kafka-tools-*.jar")),
    reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)",
)
def test_kafka_decodes_our_transaction_log(tmp_path: Path) -> None:
    """`kafka-dump-log --transaction-log-decoder` reads `__transaction_state` as we write it."""

    async def write_records() -> tuple[int, int]:
        async with running_broker(tmp_path, transaction_state_log_num_partitions=1) as broker:
            pid, epoch = await open_transaction(broker, "dumped")
            assert (await broker.end_txn("dumped", pid, epoch, commit=True)).error == ErrorCode.none
            await broker.transactions.completed("dumped")
            return pid, epoch

    pid, epoch = asyncio.run(write_records())
    segment = next((tmp_path / "__transaction_state-0").glob("*.log"))
    command = ["java", "-cp", f"{LIBS}/*", "org.apache.kafka.tools.DumpLogSegments"]
    result = subprocess.run(
        [*command, "--transaction-log-decoder", "--files", str(segment)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "key:" in line]
    states = [found.group(1) for line in lines if (found := re.search(r'"transactionStatus":"(\w+)"', line))]
    assert states == ["Empty", "Ongoing", "PrepareCommit", "CompleteCommit"], result.stdout
    assert all('"transactionalId":"dumped"' in line for line in lines), result.stdout
    assert f'"producerId":{pid}' in lines[-1] and f'"producerEpoch":{epoch}' in lines[-1], lines[-1]
    assert '"topic":"t","partitionIds":[0]' in lines[1], lines[1]
    assert "error" not in result.stdout.lower() and "unknown" not in result.stdout.lower()
