"""Transactions in the native API: atomic appends over several partitions with offsets, what
read_committed and read_uncommitted readers see, fencing, and a Kafka client reading the same
transactions through the in-process server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from kio.schema.errors import ErrorCode

import tidelog
import tidelog.aio
from tidelog.embedded import serve
from tidelog.embedded.transaction import TransactionStateError
from tidelog.errors import KafkaError

TIMEOUT_S = 15


def values(log: tidelog.Log, topic: str, partition: int, isolation: str) -> list[bytes | None]:
    return [r.value for r in log.read(topic, partition, 0, isolation=isolation)]  # type: ignore[arg-type]


def test_commit_and_abort_over_partitions_with_offsets(tmp_path: Path) -> None:
    with tidelog.open(tmp_path) as log:
        log.create_topic("out", partitions=2)
        log.create_topic("in")
        txn = log.transaction("job")
        with txn:
            txn.append("out", b"kept-0", partition=0)
            txn.append_many("out", [b"kept-1", b"kept-2"], partition=1)
            txn.commit_offsets("readers", {("in", 0): 7})
            assert values(log, "out", 0, "read_committed") == [], "not visible before the commit"
            assert values(log, "out", 0, "read_uncommitted") == [b"kept-0"]
        assert values(log, "out", 0, "read_committed") == [b"kept-0"]
        assert values(log, "out", 1, "read_committed") == [b"kept-1", b"kept-2"]
        assert log.committed_offsets("readers") == {("in", 0): 7}

        with pytest.raises(RuntimeError, match="boom"), txn:
            txn.append("out", b"gone", partition=0)
            txn.commit_offsets("readers", {("in", 0): 99})
            raise RuntimeError("boom")
        txn.begin()
        txn.append("out", b"after", partition=0)
        txn.commit()
        assert values(log, "out", 0, "read_committed") == [b"kept-0", b"after"]
        assert values(log, "out", 0, "read_uncommitted") == [b"kept-0", b"gone", b"after"]
        assert log.committed_offsets("readers") == {("in", 0): 7}
        columns = log.read_columns("out", 0, 0, isolation="read_committed")
        assert [columns.value(i) for i in range(len(columns))] == [b"kept-0", b"after"]
        offsets = log.offsets("out", 0)
        assert offsets.last_stable_offset == offsets.high_watermark == offsets.log_end_offset


def test_a_new_producer_fences_the_old_and_aborts_its_open_transaction(tmp_path: Path) -> None:
    with tidelog.open(tmp_path) as log:
        log.create_topic("t")
        old = log.transaction("same")
        old.begin()
        old.append("t", b"zombie", partition=0)
        new = log.transaction("same")
        assert new.producer_epoch > old.producer_epoch
        with pytest.raises(KafkaError) as fenced:
            old.append("t", b"late", partition=0)
        assert fenced.value.error_code == ErrorCode.invalid_producer_epoch
        with new:
            new.append("t", b"fresh", partition=0)
        assert values(log, "t", 0, "read_committed") == [b"fresh"]
        with pytest.raises(TransactionStateError):
            new.append("t", b"no transaction", partition=0)


def test_async_transactions(tmp_path: Path) -> None:
    async def main() -> list[bytes | None]:
        async with await tidelog.aio.open(tmp_path) as alog:
            await alog.create_topic("t")
            txn = await alog.transaction("async-job")
            async with txn:
                await txn.append("t", b"one", partition=0)
            txn.begin()
            await txn.append("t", b"two", partition=0)
            await txn.abort()
            return [r.value for r in alog.read("t", 0, 0, isolation="read_committed")]

    assert asyncio.run(main()) == [b"one"]


def test_a_kafka_consumer_reads_embedded_transactions_at_read_committed(tmp_path: Path) -> None:
    with tidelog.open(tmp_path) as log, serve(tmp_path) as server:
        log.create_topic("shared")
        txn = log.transaction("embedded-writer")
        for i in range(4):
            txn.begin()
            txn.append("shared", f"v{i}".encode(), partition=0)
            if i % 2:
                txn.abort()
            else:
                txn.commit()
        consumer = Consumer(
            {
                "bootstrap.servers": server.bootstrap,
                "group.id": "kafka-reader",
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
        consumer.assign([TopicPartition("shared", 0, 0)])
        seen: list[bytes] = []
        while True:
            message = consumer.poll(TIMEOUT_S)
            assert message is not None, "nothing came"
            if message.error():
                break  # the end of the partition
            seen.append(message.value())
        consumer.close()
        assert seen == [b"v0", b"v2"]
