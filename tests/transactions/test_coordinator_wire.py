"""Transactions over raw requests against a real tidelog broker, where Kafka cannot be run the
same way: a SIGKILL with a transaction open, and a transaction timeout (the cleanup interval
set short). The coordinator's answers compared with Kafka's: tests/compat/test_transaction_differential.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from tests.server.conftest import BrokerProcess, free_port, wait_until
from tests.server.test_bad_input import create_topic
from tests.transactions.txn_wire import (
    GROUP_KEY,
    READ_COMMITTED,
    TxnClient,
    begin,
    data_batch,
    request,
    stable_after,
)

PARTITIONS = "2"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    settings = {
        "num.partitions": PARTITIONS,
        "transaction.state.log.num.partitions": "4",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "100",
        "transaction.max.timeout.ms": "120000",
    }
    process = BrokerProcess(tmp_path / "data", free_port(), settings).start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


@pytest.fixture
def client(broker: BrokerProcess) -> Iterator[TxnClient]:
    client = TxnClient(broker.port)
    for topic in ("a", "b"):
        create_topic(client.wire, topic)
    yield client
    client.close()


def test_state_survives_a_sigkill(client: TxnClient, broker: BrokerProcess) -> None:
    done_pid, done_epoch = begin(client, "done")
    assert client.add_partitions("done", done_pid, done_epoch, [("b", 0)]) == {("b", 0): ErrorCode.none}
    assert client.produce("done", "b", 0, data_batch(done_pid, done_epoch, 0, [b"c"])).error_code == 0
    assert client.end("done", done_pid, done_epoch, commit=True) == ErrorCode.none
    stable_after(client, "b", 0, 2)
    pid, epoch = begin(client, "open")
    assert client.add_partitions("open", pid, epoch, [("a", 0)]) == {("a", 0): ErrorCode.none}
    assert client.add_offsets("open", pid, epoch, "g6") == ErrorCode.none
    assert client.produce("open", "a", 0, data_batch(pid, epoch, 0, [b"o0", b"o1"])).error_code == 0
    assert client.txn_commit("open", pid, epoch, "g6", {("a", 0): 2}) == {("a", 0): ErrorCode.none}
    client.close()
    broker.kill()
    broker.lines.clear()
    broker.start()
    after = TxnClient(broker.port)
    try:
        wait_until(lambda: after.end("done", done_pid, done_epoch, commit=True) == ErrorCode.none)
        fetched = after.fetch("a", 0, 0, READ_COMMITTED)
        assert (fetched.high_watermark, fetched.last_stable_offset) == (2, 0), "the open transaction pins the LSO"
        assert after.offset_fetch("g6", [("a", 0)], require_stable=True) == {
            ("a", 0): (ErrorCode.unstable_offset_commit, -1)
        }
        # The producer comes back: its old transaction is aborted, its offsets dropped.
        wait_until(lambda: after.init("open").error_code == ErrorCode.none)
        stable_after(after, "a", 0, 3)
        aborted = after.fetch("a", 0, 0, READ_COMMITTED).aborted_transactions
        assert [(a.producer_id, a.first_offset) for a in aborted] == [(pid, 0)]
        assert after.offset_fetch("g6", [("a", 0)], require_stable=True) == {("a", 0): (ErrorCode.none, -1)}
    finally:
        after.close()


def test_a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced(client: TxnClient) -> None:
    pid, epoch = begin(client, "slow", timeout_ms=300)
    assert client.add_partitions("slow", pid, epoch, [("b", 1)]) == {("b", 1): ErrorCode.none}
    assert client.produce("slow", "b", 1, data_batch(pid, epoch, 0, [b"s"])).error_code == 0
    stable_after(client, "b", 1, 2)  # aborted by the coordinator: the marker is at offset 1
    aborted = client.fetch("b", 1, 0, READ_COMMITTED).aborted_transactions
    assert [(a.producer_id, a.first_offset) for a in aborted] == [(pid, 0)]
    assert client.produce("slow", "b", 1, data_batch(pid, epoch, 1, [b"t"])).error_code == (
        ErrorCode.invalid_producer_epoch
    )
    assert client.end("slow", pid, epoch, commit=True) == ErrorCode.producer_fenced
    # The producer recovers by KIP-360 with its (id, epoch): the next epoch after the fence.
    answer = client.init("slow", timeout_ms=300, expected=(pid, epoch))
    assert answer.error_code == ErrorCode.producer_fenced


def test_a_produce_while_another_add_is_in_flight_is_appended(client: TxnClient) -> None:
    """librdkafka sends AddOffsetsToTxn while its produce requests to partitions it added
    before are in flight: the produce must not be refused while that add is being written."""
    pid, epoch = begin(client, "overlap")
    assert client.add_partitions("overlap", pid, epoch, [("a", 0)]) == {("a", 0): ErrorCode.none}
    client.find_coordinator("overlap-group", GROUP_KEY)
    fields = {"transactional_id": "overlap", "producer_id": pid, "producer_epoch": epoch}
    for round_ in range(20):  # each AddOffsetsToTxn (a new group) is written as the produce is checked
        client.wire.send(25, 3, request(25, 3, group_id=f"overlap-{round_}", **fields), correlation_id=1)
        produce = client.produce_request("overlap", "a", 0, data_batch(pid, epoch, round_, [b"x"]))
        client.wire.send(0, 9, produce, correlation_id=2)
        assert client.wire.receive(25, 3, correlation_id=1).error_code == ErrorCode.none
        answer = client.wire.receive(0, 9, correlation_id=2).responses[0].partition_responses[0]
        assert answer.error_code == ErrorCode.none, f"round {round_}: {answer.error_code!r}"
