"""The idempotent producer's rules over raw requests against a real broker: InitProducerId,
duplicates, every error case, DescribeProducers, expiry, and duplicates after restarts."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import kio.index
import pytest
from kio.schema.describe_producers.v0.request import DescribeProducersRequest, TopicRequest
from kio.schema.errors import ErrorCode
from kio.schema.list_offsets.v7.request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic

from tests.conftest import now_ms
from tests.server.conftest import BrokerProcess, free_port, wait_until
from tests.server.test_bad_input import create_topic, produce
from tests.server.wire_client import WireClient
from tidelog.protocol.record_batch import build_batch

INT32_MAX = 2**31 - 1
LATEST = -1


def init_producer_id(client: WireClient, version: int = 4, transactional_id: str | None = None) -> Any:
    cls = kio.index.load_request_schema(22, version)
    fields = {"transactional_id": transactional_id, "transaction_timeout": datetime.timedelta(seconds=60)}
    if version >= 3:
        fields |= {"producer_id": -1, "producer_epoch": -1}
    return client.request(22, version, cls(**fields))


def batch(
    producer_id: int, epoch: int, sequence: int, count: int = 3, tag: int = 0, transactional: bool = False
) -> bytes:
    base = now_ms()
    records = [(base + i, f"k{tag}-{i}".encode(), f"v{tag}-{i}".encode(), []) for i in range(count)]
    return build_batch(
        records, producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence, transactional=transactional
    )


def log_end_offset(client: WireClient, topic: str) -> int:
    request = ListOffsetsRequest(
        replica_id=-1,
        isolation_level=0,
        topics=(ListOffsetsTopic(name=topic, partitions=(ListOffsetsPartition(partition_index=0, timestamp=LATEST),)),),
    )
    return int(client.request(2, 7, request).topics[0].partitions[0].offset)


def describe_producers(client: WireClient, topic: str) -> list[Any]:
    request = DescribeProducersRequest(topics=(TopicRequest(name=topic, partition_indexes=(0,)),))
    partition = client.request(61, 0, request).topics[0].partitions[0]
    assert partition.error_code == ErrorCode.none
    return list(partition.active_producers)


@pytest.fixture
def client(broker: BrokerProcess) -> Any:
    client = WireClient(broker.port)
    create_topic(client, "t")
    yield client
    client.close()


@pytest.mark.parametrize("version", range(6))
def test_init_producer_id_hands_out_new_ids_with_epoch_zero(broker: BrokerProcess, version: int) -> None:
    client = WireClient(broker.port)
    answers = [init_producer_id(client, version) for _ in range(3)]
    assert all(a.error_code == ErrorCode.none and a.producer_epoch == 0 for a in answers)
    ids = [a.producer_id for a in answers]
    assert ids == sorted(set(ids)) and ids[0] >= 0
    client.close()


def test_producer_ids_are_never_reused_after_sigkill(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", free_port()).start()
    seen: list[int] = []
    try:
        for _ in range(3):
            client = WireClient(broker.port)
            seen += [init_producer_id(client).producer_id for _ in range(5)]
            client.close()
            broker.kill()
            broker.lines.clear()
            broker.start()
    finally:
        broker.kill()
    assert len(set(seen)) == len(seen) and seen == sorted(seen), seen


def test_a_retried_batch_appends_nothing_and_gets_its_original_offset(client: WireClient) -> None:
    pid = init_producer_id(client).producer_id
    first = batch(pid, 0, 0)
    assert produce(client, "t", first).base_offset == 0
    assert produce(client, "t", batch(pid, 0, 3)).base_offset == 3
    for retry in (first, batch(pid, 0, 3)):  # the same sequences are the same batch, whatever the bytes
        answer = produce(client, "t", retry)
        assert (answer.error_code, answer.base_offset) == (ErrorCode.none, 0 if retry is first else 3)
    assert log_end_offset(client, "t") == 6, "the retries appended nothing"


def test_the_last_five_batches_are_deduplicated_older_retries_are_out_of_order(client: WireClient) -> None:
    pid = init_producer_id(client).producer_id
    for n in range(6):
        assert produce(client, "t", batch(pid, 0, n * 3)).base_offset == n * 3
    for n in range(1, 6):
        assert produce(client, "t", batch(pid, 0, n * 3)).base_offset == n * 3
    assert produce(client, "t", batch(pid, 0, 0)).error_code == ErrorCode.out_of_order_sequence_number
    assert log_end_offset(client, "t") == 18


def test_a_sequence_gap_is_out_of_order(client: WireClient) -> None:
    pid = init_producer_id(client).producer_id
    produce(client, "t", batch(pid, 0, 0))
    answer = produce(client, "t", batch(pid, 0, 4))
    assert answer.error_code == ErrorCode.out_of_order_sequence_number
    assert produce(client, "t", batch(pid, 0, 2)).error_code == ErrorCode.out_of_order_sequence_number, "overlapping"
    assert produce(client, "t", batch(pid, 0, 3)).base_offset == 3
    assert log_end_offset(client, "t") == 6


def test_epochs_older_refused_newer_must_start_at_zero(client: WireClient) -> None:
    pid = init_producer_id(client).producer_id
    produce(client, "t", batch(pid, 0, 0))
    assert produce(client, "t", batch(pid, 1, 5)).error_code == ErrorCode.out_of_order_sequence_number
    assert produce(client, "t", batch(pid, 1, 0)).base_offset == 3, "a client-side epoch bump is accepted"
    assert produce(client, "t", batch(pid, 0, 3)).error_code == ErrorCode.invalid_producer_epoch
    assert produce(client, "t", batch(pid, 0, 0)).error_code == ErrorCode.invalid_producer_epoch, "old batches are gone"
    assert produce(client, "t", batch(pid, 1, 3)).base_offset == 6
    assert log_end_offset(client, "t") == 9


def test_a_producer_without_state_is_accepted_at_any_sequence(client: WireClient) -> None:
    assert produce(client, "t", batch(123456, 7, 4242)).base_offset == 0
    assert produce(client, "t", batch(123456, 7, 4245)).base_offset == 3


def test_sequences_wrap_at_int32_max(client: WireClient) -> None:
    pid = init_producer_id(client).producer_id
    produce(client, "t", batch(pid, 0, INT32_MAX - 4, count=4))  # INT32_MAX-4 .. INT32_MAX-1
    wrapping = batch(pid, 0, INT32_MAX, count=3)  # INT32_MAX, 0, 1
    assert produce(client, "t", wrapping).base_offset == 4
    assert produce(client, "t", wrapping).base_offset == 4, "a wrapped batch is deduplicated too"
    assert produce(client, "t", batch(pid, 0, 3)).error_code == ErrorCode.out_of_order_sequence_number
    assert produce(client, "t", batch(pid, 0, 2)).base_offset == 7
    assert [p.last_sequence for p in describe_producers(client, "t")] == [4]


def test_refused_batches_transactional_no_sequence_damaged_retry(client: WireClient) -> None:
    pid = init_producer_id(client).producer_id
    assert produce(client, "t", batch(pid, 0, 0, transactional=True)).error_code == ErrorCode.invalid_txn_state
    assert produce(client, "t", batch(pid, 0, -1)).error_code == ErrorCode.invalid_record
    good = batch(pid, 0, 0)
    assert produce(client, "t", good).base_offset == 0
    damaged = good[:-1] + bytes([good[-1] ^ 1])
    assert produce(client, "t", damaged).error_code == ErrorCode.corrupt_message, "a damaged retry is not a duplicate"
    gap = batch(pid, 0, 9)
    assert produce(client, "t", gap[:-1] + bytes([gap[-1] ^ 1])).error_code == ErrorCode.corrupt_message, "damage first"
    assert log_end_offset(client, "t") == 3


def test_describe_producers_shows_epoch_last_sequence_and_timestamp(client: WireClient) -> None:
    first, second = init_producer_id(client).producer_id, init_producer_id(client).producer_id
    before = now_ms()
    produce(client, "t", batch(first, 0, 0, count=5))
    produce(client, "t", batch(second, 0, 0))
    produce(client, "t", batch(second, 1, 0, count=2))
    states = describe_producers(client, "t")
    assert [(s.producer_id, s.producer_epoch, s.last_sequence) for s in states] == [(first, 0, 4), (second, 1, 1)]
    assert all(before <= s.last_timestamp <= now_ms() + 10 for s in states)
    assert all((s.coordinator_epoch, s.current_txn_start_offset) == (-1, -1) for s in states)
    unknown = client.request(
        61, 0, DescribeProducersRequest(topics=(TopicRequest(name="nope", partition_indexes=(0,)),))
    )
    assert unknown.topics[0].partitions[0].error_code == ErrorCode.unknown_topic_or_partition


def test_idle_producers_expire(tmp_path: Path) -> None:
    settings = {"producer.id.expiration.ms": "1000", "producer.id.expiration.check.interval.ms": "200"}
    broker = BrokerProcess(tmp_path / "data", free_port(), settings).start()
    try:
        client = WireClient(broker.port)
        create_topic(client, "t")
        pid = init_producer_id(client).producer_id
        produce(client, "t", batch(pid, 0, 0))
        assert len(describe_producers(client, "t")) == 1
        wait_until(lambda: not describe_producers(client, "t"), timeout_s=10)
        assert produce(client, "t", batch(pid, 0, 77)).base_offset == 3, "expired: any sequence again"
        client.close()
    finally:
        broker.stop()


@pytest.mark.parametrize("stop", ["sigkill", "clean"])
def test_all_five_cached_batches_deduplicate_after_a_restart(tmp_path: Path, stop: str) -> None:
    # Small segments: snapshots are written on roll, and the restart loads one plus a replay.
    broker = BrokerProcess(tmp_path / "data", free_port(), {"tidelog.internal.log.segment.bytes": "2000"}).start()
    try:
        client = WireClient(broker.port)
        create_topic(client, "t")
        pids = [init_producer_id(client).producer_id for _ in range(3)]
        offsets = {}
        for n in range(12):
            for pid in pids:
                offsets[(pid, n)] = produce(client, "t", batch(pid, 0, n * 3, tag=n)).base_offset
        end = log_end_offset(client, "t")
        client.close()
        broker.kill() if stop == "sigkill" else broker.stop()
        assert list((tmp_path / "data" / "t-0").glob("*.snapshot")), "snapshots were written"
        broker.lines.clear()
        broker.start()
        client = WireClient(broker.port)
        for pid in pids:
            for n in range(7, 12):
                answer = produce(client, "t", batch(pid, 0, n * 3, tag=n))
                assert (answer.error_code, answer.base_offset) == (ErrorCode.none, offsets[(pid, n)])
            assert produce(client, "t", batch(pid, 0, 6 * 3)).error_code == ErrorCode.out_of_order_sequence_number
        assert log_end_offset(client, "t") == end
        assert produce(client, "t", batch(pids[0], 0, 36)).base_offset == end
        client.close()
    finally:
        broker.kill()
