"""Delayed and replayed requests against tidelog and Apache Kafka 4.4, side by side.

- The KAFKA-17754 probe: a transactional Produce that reaches the broker only after its
  transaction's EndTxn, over raw requests (precise order, two connections) and with real
  clients (confluent-kafka speaks TV1; Java kafka-clients 4.4 speaks TV2, which both brokers
  finalize).
- Dropped EndTxn answers: the client retries, the retry gets the same outcome and the
  transaction ends once.
- Connection resets mid-transaction: the transaction ends exactly once.

Each runs on both brokers (Kafka's side is skipped without Java and the jars). What each broker
answers is in docs/delivery-semantics.md ("Late, lost and repeated requests").
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from kio.schema.errors import ErrorCode

from tests.faults.brokers import FaultBroker, running_broker
from tests.faults.probe_wire import AFTER_COMPLETE, AFTER_END, IN_NEXT, Outcome, probe

names = itertools.count()


@pytest.fixture(scope="module", params=["tidelog", "kafka"])
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultBroker]:
    """One broker of each kind for the whole module: these probes restart nothing."""
    yield from running_broker(request.param, tmp_path_factory.mktemp(request.param) / "data")


def port_of(broker: FaultBroker) -> int:
    return int(broker.bootstrap.rpartition(":")[2])


def refusal(version: str, produce_version: int) -> ErrorCode:
    """What a transactional batch the transaction does not cover gets: TV2 fences the old
    epoch; TV1 verification (KIP-890 part 1) answers TRANSACTION_ABORTABLE from Produce v11
    (KIP-1050) and INVALID_TXN_STATE before."""
    if version == "TV2":
        return ErrorCode.invalid_producer_epoch
    return ErrorCode.transaction_abortable if produce_version >= 11 else ErrorCode.invalid_txn_state


def check_outcome(outcome: Outcome, broker: str, produce_version: int) -> None:
    commit = outcome.ended == "commit"
    # No hanging transaction, and the next transaction's data is committed.
    assert outcome.stable, f"last stable offset stuck: {outcome.row()}"
    assert outcome.next_error == ErrorCode.none, outcome.row()
    assert b"next" in outcome.committed, outcome.row()
    # The ended transaction is whole (commit) or invisible (abort).
    assert (b"first" in outcome.committed) == commit, outcome.row()
    expected = refusal(outcome.version, produce_version)
    if outcome.version == "TV1" and outcome.when == IN_NEXT:
        # KAFKA-17754 on TV1: the next transaction already holds the partition under the same
        # producer epoch, so the late batch passes verification and its sequence follows on.
        # Nothing on the wire tells it from the next transaction's own first batch: both
        # brokers take it into the next transaction (an aborted write made visible when the
        # first transaction aborted). TV2's epoch per transaction is the fix; see the docs.
        assert outcome.late_error == ErrorCode.none, outcome.row()
        assert outcome.late_in_next, outcome.row()
        return
    # Otherwise the late batch never joins a later transaction, and an aborted transaction's
    # batch is never read at read_committed.
    assert not outcome.late_after_end, outcome.row()
    if not commit:
        assert b"late" not in outcome.committed, outcome.row()
    if broker == "tidelog" or outcome.when != AFTER_END:
        assert outcome.late_error == expected, outcome.row()
        assert b"late" not in outcome.uncommitted, outcome.row()
        return
    # Kafka, right after the EndTxn answer: the partition has not got the marker yet and still
    # counts the producer's transaction open, so it may take the batch into the transaction
    # that is ending (before the marker: committed or aborted with it); between the marker and
    # Complete its verification answers CONCURRENT_TRANSACTIONS, which Produce passes on as
    # NOT_ENOUGH_REPLICAS (retriable); after that, the refusal. tidelog refuses at once.
    assert outcome.late_error in (ErrorCode.none, ErrorCode.not_enough_replicas, expected), outcome.row()
    if outcome.late_error != ErrorCode.none:
        assert b"late" not in outcome.uncommitted, outcome.row()


@pytest.mark.parametrize("when", [AFTER_END, AFTER_COMPLETE, IN_NEXT])
@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
@pytest.mark.parametrize(
    "version, produce_version", [("TV1", 9), ("TV1", 11), ("TV2", 12)], ids=["TV1-v9", "TV1-v11", "TV2-v12"]
)
def test_a_produce_delivered_after_end_txn(
    broker: FaultBroker, version: str, produce_version: int, commit: bool, when: str
) -> None:
    """KAFKA-17754: a Produce of a transaction, sent on a second connection after the
    transaction's EndTxn (at once, once it completed, or once the next transaction holds the
    partition), then the next transaction commits."""
    n = next(names)
    outcome = probe(port_of(broker), broker.name, version, commit, when, f"late-{n}", f"late-{n}", produce_version)
    print(f"\n{outcome.row()}")
    check_outcome(outcome, broker.name, produce_version)
