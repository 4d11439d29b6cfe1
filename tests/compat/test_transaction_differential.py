"""Transaction scenarios over raw requests whose answers must match Apache Kafka 4.4's: the
coordinator (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit) with
the error codes clients act on, per version; read_committed fetches (last stable offset,
aborted transactions, control batches kept); ListOffsets under READ_COMMITTED; fencing; and
OffsetFetch require_stable. Both brokers run with their defaults (transaction.max.timeout.ms
15 min). Producer ids differ between brokers; everything else is compared."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
from kio.schema.errors import ErrorCode

from tests.compat.test_differential import create_topics, new_topic, wait_for_leader
from tests.server.conftest import wait_until
from tests.transactions.txn_wire import (
    READ_COMMITTED,
    READ_UNCOMMITTED,
    TxnClient,
    begin,
    data_batch,
    records_of,
    request,
    schema,
    settled,
    stable_after,
)

names = (f"compat-txn-{i}" for i in itertools.count())
PARTITIONS = 2


@pytest.fixture
def client(port: int) -> Iterator[TxnClient]:
    client = TxnClient(port)
    yield client
    client.close()


@pytest.fixture
def topics(client: TxnClient) -> tuple[str, str]:
    """Two new topics of two partitions each."""
    made = (next(names), next(names))
    for name in made:
        assert create_topics(client.wire, new_topic(name, PARTITIONS))[0].error_code == ErrorCode.none
        wait_for_leader(client.wire, name)
    return made


def test_a_commit_across_partitions_is_seen_by_read_committed_only_once_committed(
    client: TxnClient, topics: tuple[str, str]
) -> None:
    a, b = topics
    pid, epoch = begin(client, "t1")
    assert client.produce("t1", a, 0, data_batch(pid, epoch, 0, [b"x"])).error_code == ErrorCode.invalid_txn_state
    wanted = [(a, 0), (a, 1), (b, 0)]
    assert client.add_partitions("t1", pid, epoch, wanted) == dict.fromkeys(wanted, ErrorCode.none)
    assert client.produce("t1", a, 0, data_batch(pid, epoch, 0, [b"a0-0", b"a0-1", b"a0-2"])).error_code == 0
    assert client.produce("t1", a, 1, data_batch(pid, epoch, 0, [b"a1-0"])).error_code == 0
    assert client.produce("t1", b, 0, data_batch(pid, epoch, 0, [b"b0-0"])).error_code == 0

    uncommitted = client.fetch(a, 0, 0, READ_UNCOMMITTED)
    assert [r[1] for r in records_of(uncommitted)] == [b"a0-0", b"a0-1", b"a0-2"]
    committed = client.fetch(a, 0, 0, READ_COMMITTED)
    assert records_of(committed) == []
    assert (committed.high_watermark, committed.last_stable_offset) == (3, 0)
    assert client.latest(a, 0, READ_COMMITTED) == 0
    assert client.latest(a, 0, READ_UNCOMMITTED) == 3

    assert client.end("t1", pid, epoch, commit=True) == ErrorCode.none
    for topic, index, end in ((a, 0, 4), (a, 1, 2), (b, 0, 2)):
        stable_after(client, topic, index, end)
    after = client.fetch(a, 0, 0, READ_COMMITTED)
    seen = records_of(after)
    assert [r[1] for r in seen if not r[2]] == [b"a0-0", b"a0-1", b"a0-2"]
    assert [(r[0], r[2]) for r in seen if r[2]] == [(3, True)], "the COMMIT marker is kept in the answer"
    assert (after.high_watermark, after.last_stable_offset) == (4, 4)
    assert list(after.aborted_transactions) == []
    # EndTxn retries are idempotent; the opposite outcome is refused.
    assert settled(lambda: client.end("t1", pid, epoch, commit=True)) == ErrorCode.none
    assert client.end("t1", pid, epoch, commit=False) == ErrorCode.invalid_txn_state


def test_an_abort_is_listed_for_read_committed_and_indexed(client: TxnClient, topics: tuple[str, str]) -> None:
    a, b = topics
    pid, epoch = begin(client, "t2")
    assert client.add_partitions("t2", pid, epoch, [(a, 0)]) == {(a, 0): ErrorCode.none}
    assert client.produce("t2", a, 0, data_batch(pid, epoch, 0, [b"gone-0", b"gone-1"])).error_code == 0
    assert client.end("t2", pid, epoch, commit=False) == ErrorCode.none
    stable_after(client, a, 0, 3)
    fetched = client.fetch(a, 0, 0, READ_COMMITTED)
    assert [(a.producer_id, a.first_offset) for a in fetched.aborted_transactions] == [(pid, 0)]
    assert [r[2] for r in records_of(fetched)] == [False, False, True]  # data kept, the client drops it
    assert fetched.last_stable_offset == 3
    # A fetch past the aborted range is told of nothing.
    assert list(client.fetch(a, 0, 3, READ_COMMITTED).aborted_transactions or []) == []
    # A committed transaction after it: its data is not listed as aborted.
    epoch_ = epoch
    assert settled(lambda: client.add_partitions("t2", pid, epoch_, [(a, 0)])) == {(a, 0): ErrorCode.none}
    assert client.produce("t2", a, 0, data_batch(pid, epoch_, 2, [b"kept"])).error_code == 0
    assert client.end("t2", pid, epoch_, commit=True) == ErrorCode.none
    stable_after(client, a, 0, 5)
    later = client.fetch(a, 0, 0, READ_COMMITTED)
    assert [(a.producer_id, a.first_offset) for a in later.aborted_transactions] == [(pid, 0)]


def test_a_new_producer_fences_the_old_one_and_aborts_its_transaction(
    client: TxnClient, topics: tuple[str, str]
) -> None:
    a, b = topics
    pid, epoch = begin(client, "t3")
    assert client.add_partitions("t3", pid, epoch, [(a, 1)]) == {(a, 1): ErrorCode.none}
    assert client.produce("t3", a, 1, data_batch(pid, epoch, 0, [b"zombie"])).error_code == 0
    # The new producer is told to retry until the old transaction is aborted.
    first = client.init("t3")
    assert first.error_code == ErrorCode.concurrent_transactions
    answers: list[object] = []

    def reinit() -> bool:
        answer = client.init("t3")
        answers.append(answer)
        return bool(answer.error_code == ErrorCode.none)

    wait_until(reinit)
    answer = answers[-1]
    assert answer.producer_id == pid and answer.producer_epoch == epoch + 2  # fence bump, then init bump
    # The zombie is fenced everywhere, with each version's code.
    assert client.produce("t3", a, 1, data_batch(pid, epoch, 1, [b"late"])).error_code == (
        ErrorCode.invalid_producer_epoch
    )
    assert client.end("t3", pid, epoch, commit=True, version=3) == ErrorCode.producer_fenced
    assert client.end("t3", pid, epoch, commit=True, version=1) == ErrorCode.invalid_producer_epoch
    assert client.add_partitions("t3", pid, epoch, [(a, 1)], version=1) == {(a, 1): ErrorCode.invalid_producer_epoch}
    fetched = client.fetch(a, 1, 0, READ_COMMITTED)
    assert [(a.producer_id, a.first_offset) for a in fetched.aborted_transactions] == [(pid, 0)]
    assert fetched.last_stable_offset == 2


def test_coordinator_error_codes(client: TxnClient, topics: tuple[str, str]) -> None:
    a, b = topics
    assert client.init("").error_code == ErrorCode.invalid_request
    assert client.init("t4", timeout_ms=900_001).error_code == ErrorCode.invalid_transaction_timeout
    assert client.init("t4", timeout_ms=0).error_code == ErrorCode.invalid_transaction_timeout
    assert client.add_partitions("nobody", 1, 0, [(a, 0)]) == {(a, 0): ErrorCode.invalid_producer_id_mapping}
    assert client.end("nobody", 1, 0, commit=True) == ErrorCode.invalid_producer_id_mapping
    pid, epoch = begin(client, "t4")
    assert client.end("t4", pid, epoch, commit=True) == ErrorCode.invalid_txn_state  # Empty
    assert client.add_partitions("t4", pid + 1, epoch, [(a, 0)]) == {(a, 0): ErrorCode.invalid_producer_id_mapping}
    assert client.add_partitions("t4", pid, epoch + 1, [(a, 0)]) == {(a, 0): ErrorCode.producer_fenced}
    assert client.add_partitions("t4", pid, epoch, [(a, 0), (f"{a}-missing", 0)]) == {
        (a, 0): ErrorCode.operation_not_attempted,
        (f"{a}-missing", 0): ErrorCode.unknown_topic_or_partition,
    }
    assert client.add_partitions("t4", pid, epoch, [(a, 0)]) == {(a, 0): ErrorCode.none}
    assert client.produce("t4", a, 0, data_batch(pid, epoch, 0, [b"in"])).error_code == ErrorCode.none
    # A non-transactional batch from a producer with an open transaction.
    plain = data_batch(pid, epoch, 1, [b"plain"], transactional=False)
    assert client.produce(None, a, 0, plain).error_code == ErrorCode.invalid_txn_state
    # A partition not added to the transaction.
    assert client.produce("t4", b, 0, data_batch(pid, epoch, 0, [b"b"])).error_code == ErrorCode.invalid_txn_state
    # KIP-360: InitProducerId with the producer's (id, epoch) bumps it; another id is fenced.
    assert client.init("t4", expected=(pid + 7, epoch)).error_code == ErrorCode.producer_fenced
    assert client.end("t4", pid, epoch, commit=False) == ErrorCode.none
    wait_until(lambda: client.init("t4", expected=(pid, epoch)).error_code == ErrorCode.none)


def test_offsets_committed_in_a_transaction_wait_for_its_commit(client: TxnClient, topics: tuple[str, str]) -> None:
    a, b = topics
    pid, epoch = begin(client, "t5")
    assert client.add_offsets("t5", pid, epoch, "g5") == ErrorCode.none
    offsets = {(a, 0): 17, (b, 1): 5}
    assert client.txn_commit("t5", pid, epoch, "g5", offsets) == dict.fromkeys(offsets, ErrorCode.none)
    assert client.offset_fetch("g5", list(offsets), require_stable=True) == dict.fromkeys(
        offsets, (ErrorCode.unstable_offset_commit, -1)
    )
    assert client.offset_fetch("g5", list(offsets), require_stable=False) == dict.fromkeys(
        offsets, (ErrorCode.none, -1)
    )
    assert client.end("t5", pid, epoch, commit=True) == ErrorCode.none
    wanted = {tp: (ErrorCode.none, o) for tp, o in offsets.items()}
    wait_until(lambda: client.offset_fetch("g5", list(offsets), require_stable=True) == wanted)
    # An aborted transaction's offsets never show.
    assert settled(lambda: client.add_offsets("t5", pid, epoch, "g5")) == ErrorCode.none
    assert client.txn_commit("t5", pid, epoch, "g5", {(a, 0): 99}) == {(a, 0): ErrorCode.none}
    assert client.end("t5", pid, epoch, commit=False) == ErrorCode.none
    wait_until(lambda: client.offset_fetch("g5", [(a, 0)], require_stable=True) == {(a, 0): (ErrorCode.none, 17)})
    # TxnOffsetCommit without AddOffsetsToTxn is refused.
    settled(lambda: client.add_partitions("t5", pid, epoch, [(a, 0)]))  # a new transaction, without the group
    assert client.txn_commit("t5", pid, epoch, "g5", {(a, 0): 1}) == {(a, 0): ErrorCode.invalid_txn_state}


def test_transaction_version_2(client: TxnClient, topics: tuple[str, str]) -> None:
    """TV2 (KIP-890 part 2), as Java 4.x speaks it when the broker finalizes transaction.version=2:
    Produce v12 and TxnOffsetCommit v5 add their partitions implicitly, EndTxn v5 bumps the epoch
    at every end and answers the new one, a retry with the old epoch is answered the same."""
    a, b = topics
    features = client.api_versions()
    finalized = {f.name: (f.min_version_level, f.max_version_level) for f in features.finalized_features}
    assert finalized.get("transaction.version") == (2, 2) and features.finalized_features_epoch >= 0
    versions = {k.api_key: k.max_version for k in features.api_keys}
    assert versions[0] >= 12 and versions[26] >= 5 and versions[28] >= 5
    pid, epoch = begin(client, "tv2")
    assert client.produce("tv2", a, 0, data_batch(pid, epoch, 0, [b"v2-0", b"v2-1"]), version=12).error_code == 0
    assert client.produce("tv2", b, 1, data_batch(pid, epoch, 0, [b"v2-b"]), version=12).error_code == 0
    committed = client.txn_commit("tv2", pid, epoch, "tv2-group", {(a, 0): 2}, version=5)
    assert committed == {(a, 0): ErrorCode.none}
    answer = client.end_answer("tv2", pid, epoch, commit=True)
    assert (answer.error_code, answer.producer_id, answer.producer_epoch) == (ErrorCode.none, pid, epoch + 1)
    # A retry with the epoch the client sent (it missed the answer): the same answer.
    retried = settled(lambda: client.end_answer("tv2", pid, epoch, commit=True).error_code)
    assert retried == ErrorCode.none
    again = client.end_answer("tv2", pid, epoch, commit=True)
    assert (again.producer_id, again.producer_epoch) == (pid, epoch + 1)
    assert client.end_answer("tv2", pid, epoch, commit=False).error_code == ErrorCode.invalid_txn_state
    stable_after(client, a, 0, 3)
    assert [r[1] for r in records_of(client.fetch(a, 0, 0, READ_COMMITTED)) if not r[2]] == [b"v2-0", b"v2-1"]
    wait_until(lambda: client.offset_fetch("tv2-group", [(a, 0)], require_stable=True) == {(a, 0): (ErrorCode.none, 2)})
    # The next transaction runs under the new epoch; the old one is fenced.
    epoch += 1
    assert client.produce("tv2", a, 0, data_batch(pid, epoch - 1, 2, [b"zombie"]), version=12).error_code == (
        ErrorCode.invalid_producer_epoch
    )
    assert client.produce("tv2", a, 0, data_batch(pid, epoch, 0, [b"next"]), version=12).error_code == 0
    aborted = client.end_answer("tv2", pid, epoch, commit=False)
    assert (aborted.error_code, aborted.producer_epoch) == (ErrorCode.none, epoch + 1)
    stable_after(client, a, 0, 5)
    assert [(t.producer_id, t.first_offset) for t in client.fetch(a, 0, 0, READ_COMMITTED).aborted_transactions] == [
        (pid, 3)
    ]


def test_add_partitions_v4_batched_and_verify_only(client: TxnClient, topics: tuple[str, str]) -> None:
    """AddPartitionsToTxn v4+ (Kafka's broker form, answered to any client): many transactions in
    one request, each with its own answer; verify_only checks without adding."""
    a, b = topics
    pid, epoch = begin(client, "batched")
    transaction_cls = schema(24, 4, ["transactions"])
    topic_cls = schema(24, 4, ["transactions", "topics"])

    def add(verify_only: bool, *entries: tuple[str, int, int]) -> dict[tuple[str, str, int], ErrorCode]:
        body = request(
            24,
            4,
            transactions=tuple(
                transaction_cls(
                    transactional_id=tid,
                    producer_id=producer,
                    producer_epoch=epoch,
                    verify_only=verify_only,
                    topics=(topic_cls(name=a, partitions=(index,)),),
                )
                for tid, producer, index in entries
            ),
        )
        response = client.wire.request(24, 4, body)
        assert response.error_code == ErrorCode.none
        return {
            (r.transactional_id, t.name, int(p.partition_index)): p.partition_error_code
            for r in response.results_by_transaction
            for t in r.topic_results
            for p in t.results_by_partition
        }

    assert add(True, ("batched", pid, 0)) == {("batched", a, 0): ErrorCode.transaction_abortable}
    assert add(False, ("batched", pid, 0), ("nobody", 99, 1)) == {
        ("batched", a, 0): ErrorCode.none,
        ("nobody", a, 1): ErrorCode.invalid_producer_id_mapping,
    }
    assert add(True, ("batched", pid, 0)) == {("batched", a, 0): ErrorCode.none}
    assert client.produce("batched", a, 0, data_batch(pid, epoch, 0, [b"v4"])).error_code == ErrorCode.none
    assert client.end("batched", pid, epoch, commit=False) == ErrorCode.none


def test_a_long_polled_read_committed_fetch_carries_the_abort(
    client: TxnClient, topics: tuple[str, str], port: int
) -> None:
    """KAFKA-5376: a read_committed fetch waiting at the last stable offset is woken when an
    abort moves it, and its answer lists the aborted transaction and keeps the marker."""
    a, _ = topics
    pid, epoch = begin(client, "delayed")
    assert client.add_partitions("delayed", pid, epoch, [(a, 0)]) == {(a, 0): ErrorCode.none}
    assert client.produce("delayed", a, 0, data_batch(pid, epoch, 0, [b"d0", b"d1"])).error_code == 0
    poller = TxnClient(port)
    try:
        poller.wire.send(1, 12, poller.fetch_request(a, 0, 0, READ_COMMITTED, max_wait_ms=10_000), correlation_id=7)
        time.sleep(0.3)  # the fetch is waiting: nothing is stable yet
        assert client.end("delayed", pid, epoch, commit=False) == ErrorCode.none
        started = time.monotonic()
        answer = poller.wire.receive(1, 12, correlation_id=7).responses[0].partitions[0]
        assert time.monotonic() - started < 5, "woken by the abort, not by max_wait"
    finally:
        poller.close()
    assert answer.last_stable_offset == 3
    assert [(t.producer_id, t.first_offset) for t in answer.aborted_transactions] == [(pid, 0)]
    assert [(r[0], r[2]) for r in records_of(answer)] == [(0, False), (1, False), (2, True)], "data, then the marker"


def test_a_sequence_repeated_after_an_abort_is_answered_as_the_aborted_duplicate(
    client: TxnClient, topics: tuple[str, str]
) -> None:
    """What a broker does when a client sends, in its next transaction and the same epoch, a new
    batch with the sequence of a batch of the transaction it aborted (as a client does that
    forgets an un-acknowledged batch on abort without bumping its epoch): Kafka's duplicate
    check looks at producer id, epoch and sequence only, so the new batch is "acknowledged" at
    the aborted batch's offset and never written. Knowing this is what makes a lost write seen
    through `tidelog verify --faults proxy` a client matter, not the broker's."""
    a, _ = topics
    pid, epoch = begin(client, "t-seq")
    assert client.add_partitions("t-seq", pid, epoch, [(a, 0)]) == {(a, 0): ErrorCode.none}
    assert client.produce("t-seq", a, 0, data_batch(pid, epoch, 0, [b"aborted"])).error_code == ErrorCode.none
    assert client.end("t-seq", pid, epoch, commit=False) == ErrorCode.none
    assert settled(lambda: client.add_partitions("t-seq", pid, epoch, [(a, 0)])) == {(a, 0): ErrorCode.none}
    again = client.produce("t-seq", a, 0, data_batch(pid, epoch, 0, [b"new"]))
    assert (again.error_code, again.base_offset) == (ErrorCode.none, 0)
    assert client.end("t-seq", pid, epoch, commit=True) == ErrorCode.none
    stable_after(client, a, 0, 3)
    fetched = client.fetch(a, 0, 0, READ_COMMITTED)
    assert [r[1] if not r[2] else "marker" for r in records_of(fetched)] == [b"aborted", "marker", "marker"]
    assert [(t.producer_id, t.first_offset) for t in fetched.aborted_transactions] == [(pid, 0)]
