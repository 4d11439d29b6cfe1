"""The native API's own promises: durability levels, partitioning, reads and columns, tails,
sharing a directory, and clear errors for bad input."""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import tidelog
import tidelog.aio
from tidelog.embedded import serve
from tidelog.errors import (
    ClosedError,
    InvalidConfigError,
    InvalidTimestampError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from tidelog.protocol.record_batch import iter_batches, murmur2


def test_each_durability_level_answers_when_it_holds(tmp_path: Path) -> None:
    with tidelog.open(tmp_path) as log:
        log.create_topic("t")
        partition = log._home.broker.partition("t", 0)
        assert partition is not None
        durable = log.append("t", b"fsync")
        assert durable is not None and partition.log.durable_offset > durable.offset, "fsynced before the answer"
        in_cache = log.append("t", b"os", durability="os")
        assert in_cache is not None and in_cache.offset == 1 and partition.log_end_offset == 2
        assert log.append("t", b"none", durability="none") is None
        assert [r.value for r in log_tail(log, "t", 3)] == [b"fsync", b"os", b"none"], "all three end up committed"


def log_tail(log: tidelog.Log, topic: str, count: int) -> list[tidelog.Record]:
    records = []
    for record in log.tail(topic, 0, 0, timeout=10):
        records.append(record)
        if len(records) == count:
            break
    return records


def test_keyed_records_go_where_the_java_client_would_put_them(tmp_path: Path) -> None:
    with tidelog.open(tmp_path) as log:
        log.create_topic("keyed", partitions=7)
        # Utils.toPositive(Utils.murmur2(key)) % 7, computed with Kafka 4.4's client: key-42 → 3.
        assert log.append("keyed", b"v", key=b"key-42").partition == 3  # type: ignore[union-attr]
        assert murmur2(b"21") == -973932308 and murmur2(b"abc") == 479470107
        results = log.append_many("keyed", [(b"key-42", b"a"), (b"other", b"b"), (b"key-42", b"c")])
        by_partition = {r.partition: r for r in results}
        assert by_partition[3].last_offset - by_partition[3].base_offset == 1, "both key-42 records, together"
        assert [r.value for r in log.read("keyed", 3, 0)] == [b"v", b"a", b"c"]
        unkeyed = {log.append("keyed", b"x").partition for _ in range(7)}  # type: ignore[union-attr]
        assert unkeyed == set(range(7)), "round robin"


def test_reads_respect_limits_and_columns_hold_the_same_records(tmp_path: Path) -> None:
    with tidelog.open(tmp_path) as log:
        log.create_topic("t")
        for call in range(10):
            batch = [(f"k{call}-{i}".encode() if i % 3 else None, b"v" * (i % 5) if i % 4 else None) for i in range(50)]
            log.append_many("t", batch)
        records = log.read("t", 0, 0)
        assert [r.offset for r in records] == list(range(500))
        assert [r.offset for r in log.read("t", 0, 123, max_records=7)] == list(range(123, 130))
        columns = log.read_columns("t", 0, 120, max_records=300)
        assert len(columns) == 300 and columns.next_offset == 420
        assert list(columns.offsets) == list(range(120, 420))
        for i in range(300):
            record = records[120 + i]
            assert (columns.key(i), columns.value(i), int(columns.timestamps[i])) == (
                record.key,
                record.value,
                record.timestamp,
            )
        assert log.read("t", 0, 500) == [], "nothing past the high watermark"
        with pytest.raises(OffsetOutOfRangeError):
            log.read("t", 0, 501)


def test_bad_input_gets_a_clear_typed_exception_and_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    with tidelog.open(tmp_path) as log:
        log.create_topic("small", config={"max.message.bytes": "2000"})
        assert log.append("small", b"kept").offset == 0  # type: ignore[union-attr]
        with pytest.raises(TypeError, match="value must be bytes"):
            log.append("small", 42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="header value must be bytes"):
            log.append("small", b"v", headers=[("h", 1)])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="timestamp"):
            log.append("small", b"v", timestamp=-5)
        with pytest.raises(ValueError, match="durability"):
            log.append("small", b"v", durability="always")  # type: ignore[arg-type]
        with pytest.raises(UnknownTopicOrPartitionError):
            log.append("missing", b"v")
        with pytest.raises(UnknownTopicOrPartitionError):
            log.append("small", b"v", partition=3)
        with pytest.raises(RecordTooLargeError):
            log.append("small", b"x" * 5000)
        with pytest.raises(TopicAlreadyExistsError):
            log.create_topic("small")
        with pytest.raises(InvalidConfigError, match="segment.bytes"):
            log.create_topic("tiny", config={"segment.bytes": "1000"})
        assert [r.value for r in log.read("small", 0, 0)] == [b"kept"]
    with pytest.raises(ClosedError):
        log.append("small", b"after close")
    with pytest.raises(ClosedError):
        log.read("small", 0, 0)


def test_async_appends_follow_topic_changes_and_close(tmp_path: Path) -> None:
    """Once a topic is known the asyncio append takes a shorter way; it must answer exactly as
    the full checks do when the topic changes, the arguments are wrong, or the log closed."""

    async def scenario() -> None:
        log = await tidelog.aio.open(tmp_path)
        await log.create_topic("t")
        assert (await log.append("t", b"a", partition=0)).offset == 0  # type: ignore[union-attr]
        assert (await log.append("t", b"b", key=b"k", partition=0)).offset == 1  # type: ignore[union-attr]
        with pytest.raises(UnknownTopicOrPartitionError):
            log.append("t", b"x", partition=1)
        with pytest.raises(UnknownTopicOrPartitionError):
            log.append("t", b"x", partition=True)  # a bool is not a partition number
        with pytest.raises(TypeError, match="value must be bytes"):
            log.append("t", 42, partition=0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="durability"):
            log.append("t", b"x", partition=0, durability="always")  # type: ignore[arg-type]
        await log.delete_topic("t")
        with pytest.raises(UnknownTopicOrPartitionError):
            log.append("t", b"x", partition=0)
        await log.create_topic("t", partitions=2)
        assert (await log.append("t", b"c", partition=1)).offset == 0  # type: ignore[union-attr]
        assert [r.value for r in log.read("t", 1, 0)] == [b"c"]
        assert log.read("t", 0, 0) == []
        await log.aclose()
        with pytest.raises(ClosedError):
            log.append("t", b"x", partition=0)

    asyncio.run(scenario())


def test_appends_joined_past_max_message_bytes_go_in_several_batches(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await tidelog.aio.open(tmp_path) as log:
            await log.create_topic("small", config={"max.message.bytes": "2000"})
            values = [bytes([i]) * 100 for i in range(60)]  # ~8 KiB joined: five batches or more
            results = await asyncio.gather(*(log.append("small", v, partition=0) for v in values))
            assert [r.offset for r in results] == list(range(60))  # type: ignore[union-attr]
            assert [r.value for r in log.read("small", 0, 0, max_records=100)] == values
            with open(next((tmp_path / "small-0").glob("*.log")), "rb") as segment:
                batches = iter_batches(segment.read())
            assert 5 <= len(batches) <= 10 and all(len(view) <= 2000 for _, view in batches)  # not one per call

    asyncio.run(scenario())


def test_a_bad_append_fails_alone_when_joined_with_others(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await tidelog.aio.open(tmp_path, config={"log.message.timestamp.after.max.ms": "1000"}) as log:
            await log.create_topic("t")
            future = 10**13  # far ahead of the broker's clock: INVALID_TIMESTAMP
            outcomes = await asyncio.gather(
                log.append("t", b"a"),
                log.append("t", b"bad", timestamp=future),
                log.append("t", b"b"),
                return_exceptions=True,
            )
            assert isinstance(outcomes[1], InvalidTimestampError), outcomes[1]
            assert sorted(o.offset for o in outcomes if not isinstance(o, BaseException)) == [0, 1]  # type: ignore[union-attr]
            assert [r.value for r in log.read("t", 0, 0)] == [b"a", b"b"]

    asyncio.run(scenario())


def test_concurrent_asyncio_appends_are_joined_into_few_fsyncs(tmp_path: Path) -> None:
    async def scenario() -> int:
        async with await tidelog.aio.open(tmp_path) as log:
            await log.create_topic("t")
            partition = log._home.broker.partition("t", 0)
            assert partition is not None
            results = await asyncio.gather(*(log.append("t", f"{i}".encode()) for i in range(1000)))
            assert sorted(r.offset for r in results) == list(range(1000))  # type: ignore[union-attr]
            assert partition.log.durable_offset == 1000
            return partition.log.group_commit.flushes

    assert asyncio.run(scenario()) < 50, "one batch and one fsync per loop turn, not per append"


def test_sync_appends_from_threads(tmp_path: Path) -> None:
    with tidelog.open(tmp_path) as log:
        log.create_topic("t")
        offsets: list[int] = []
        lock = threading.Lock()

        def writer(tag: int) -> None:
            for i in range(50):
                result = log.append("t", f"{tag}-{i}".encode())
                with lock:
                    offsets.append(result.offset)  # type: ignore[union-attr]

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(offsets) == list(range(400))
        values = [r.value for r in log.read("t", 0, 0)]
        for tag in range(8):
            mine = [v for v in values if v.startswith(f"{tag}-".encode())]  # type: ignore[union-attr]
            assert mine == [f"{tag}-{i}".encode() for i in range(50)], "each thread's appends in its order"


def test_async_tail_wakes_when_records_arrive(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        async with await tidelog.aio.open(tmp_path) as log:
            await log.create_topic("t")
            await log.append("t", b"first")
            seen: list[int] = []

            async def follow() -> None:
                async for record in log.tail("t", 0, 0, timeout=5):
                    seen.append(record.offset)
                    if len(seen) == 3:
                        return

            follower = asyncio.create_task(follow())
            await asyncio.sleep(0.05)
            await log.append("t", b"second")
            await log.append("t", b"third", durability="os")
            await asyncio.wait_for(follower, 10)
            return seen

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_the_native_api_and_the_server_share_one_directory(tmp_path: Path) -> None:
    from confluent_kafka import Producer

    with serve(tmp_path) as server, tidelog.open(tmp_path) as log:
        log.create_topic("shared")
        producer = Producer({"bootstrap.servers": server.bootstrap})
        producer.produce("shared", b"over tcp", partition=0)
        assert producer.flush(15) == 0
        log.append("shared", b"native")
        assert [r.value for r in log.read("shared", 0, 0)] == [b"over tcp", b"native"]
        with pytest.raises(ValueError, match="other settings"):
            tidelog.open(tmp_path, config={"num.partitions": "3"})
    with tidelog.open(tmp_path) as reopened:  # closed cleanly, opened again
        assert len(reopened.read("shared", 0, 0)) == 2


def hold_directory(
    path: str, ready: multiprocessing.synchronize.Event, done: multiprocessing.synchronize.Event
) -> None:
    log = tidelog.open(path)
    ready.set()
    done.wait(30)
    log.close()


def test_one_process_owns_a_directory(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    holder = context.Process(target=hold_directory, args=(str(tmp_path), ready, done))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RuntimeError, match="in use by another tidelog process"):
            tidelog.open(tmp_path)
    finally:
        done.set()
        holder.join(30)


def test_a_log_left_open_is_closed_cleanly_at_exit(tmp_path: Path) -> None:
    code = f"import tidelog; log = tidelog.open({str(tmp_path)!r}); log.create_topic('t'); log.append('t', b'x')"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with tidelog.open(tmp_path) as log:
        assert log._home.broker.logs.recovery_reports[("t", 0)].clean_shutdown  # type: ignore[index]
        assert [r.value for r in log.read("t", 0, 0)] == [b"x"]


def test_the_sync_api_refuses_to_block_its_own_event_loop(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await tidelog.aio.open(tmp_path) as log:
            await log.create_topic("t")
            sync = tidelog.open(tmp_path)  # the same directory, so the same loop: this one
            with pytest.raises(RuntimeError, match="would block the event loop"):
                sync.append("t", b"x")
            sync.close()  # not the last handle: the broker stays open for the async one

    asyncio.run(scenario())


def test_a_damaged_batch_is_never_handed_to_a_native_reader(tmp_path: Path) -> None:
    from tidelog.errors import CorruptRecordError

    with tidelog.open(tmp_path) as log:
        log.create_topic("t")
        log.append_many("t", [b"a" * 50, b"b" * 50])
        log.append_many("t", [b"c" * 50])
        segment = next((tmp_path / "t-0").glob("*.log"))
        data = bytearray(segment.read_bytes())
        data[len(data) - 10] ^= 0xFF  # inside the second batch's records
        segment.write_bytes(data)
        assert [r.value for r in log.read("t", 0, 0, max_records=2)] == [b"a" * 50, b"b" * 50]
        with pytest.raises(CorruptRecordError, match="CRC-32C"):
            log.read("t", 0, 2)
        with pytest.raises(CorruptRecordError):
            log.read_columns("t", 0, 0)


def test_threads_tcp_producers_and_a_tail_share_one_partition(tmp_path: Path) -> None:
    """Synchronous appends (from threads, in those threads) and a Kafka producer over TCP (on the
    broker's loop) interleave on one partition: every record once, offsets unique; a tail waiting
    meanwhile wakes for each; segments roll under the threads and get their snapshots."""
    from confluent_kafka import Producer

    config = {"tidelog.internal.log.segment.bytes": str(16 << 10)}
    with serve(tmp_path, config=config) as server, tidelog.open(tmp_path, config=config) as log:
        log.create_topic("mixed")
        seen: list[int] = []

        async def follow() -> None:
            async with await tidelog.aio.open(tmp_path, config=config) as alog:
                async for record in alog.tail("mixed", 0, 0, timeout=20):
                    seen.append(record.offset)
                    if len(seen) == 600:
                        return

        follower = threading.Thread(target=asyncio.run, args=(follow(),))
        follower.start()

        def writer(tag: int) -> None:
            for i in range(50):
                log.append_many(
                    "mixed", [f"t{tag}-{i}-{j}".encode() for j in range(2)], durability=["fsync", "os"][i % 2]
                )

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        producer = Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 1, "enable.idempotence": True})
        for i in range(200):
            producer.produce("mixed", f"tcp-{i}".encode(), partition=0)
        assert producer.flush(20) == 0
        for thread in threads:
            thread.join()
        follower.join(30)
        assert sorted(seen) == list(range(600)), "the tail saw every record once"
        values = [r.value for r in log.read("mixed", 0, 0, max_records=1000)]
        assert len(values) == len(set(values)) == 600
        assert [v for v in values if v.startswith(b"tcp-")] == [f"tcp-{i}".encode() for i in range(200)]
    snapshots = sorted((tmp_path / "mixed-0").glob("*.snapshot"))
    assert len(snapshots) >= 2, "rolls made by the threads' appends were snapshotted (and at close)"
