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

import contextlib
import itertools
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.errors import ErrorCode

from tests.faults.brokers import FaultBroker, running_broker
from tests.faults.probe_clients import (
    KAFKA_LIBS,
    AnswerCodes,
    CaptureProduce,
    ClientError,
    ConfluentTxn,
    DropAnswer,
    JavaTxn,
    ResetBefore,
    compile_driver,
    read_values,
    stable,
)
from tests.faults.probe_wire import AFTER_COMPLETE, AFTER_END, IN_NEXT, Outcome, make_topic, probe
from tests.transactions.txn_wire import (
    READ_COMMITTED,
    TxnClient,
    begin,
    data_batch,
    records_of,
    request,
    schema,
    settled,
    stable_after,
)
from tidelog.verify.proxy import END_TXN, PRODUCE, FaultProxy, Rule

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
    # NOT_ENOUGH_REPLICAS (retriable); after that, the refusal. When its verification passed
    # (the coordinator still counted the transaction ongoing) but the marker reached the log
    # first, the log's own check answers INVALID_TXN_STATE even to Produce v11 (seen in a CI run
    # on Kafka 4.4, TV1 abort). tidelog refuses at once.
    allowed = (ErrorCode.none, ErrorCode.not_enough_replicas, ErrorCode.invalid_txn_state, expected)
    assert outcome.late_error in allowed, outcome.row()
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


# ---- real clients through the fault proxy ------------------------------------------------------

CLIENTS = ["confluent", "java"]
PROBE_PARTITIONS = 2
SETTLE_S = 20.0
END_ATTEMPTS = 5
END_TXN_VERSION = 3
PAUSED_S = 0.5
ADD_PARTITIONS_TO_TXN = 24


@pytest.fixture(scope="session")
def java_classes(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    if shutil.which("javac") is None or not any(KAFKA_LIBS.glob("kafka-clients-*.jar")):
        return None
    return compile_driver(tmp_path_factory.mktemp("java-driver"))


def producer(kind: str, bootstrap: str, tid: str, java_classes: Path | None) -> ConfluentTxn | JavaTxn:
    if kind == "java":
        if java_classes is None:
            pytest.skip("needs Java and the Kafka jars (bench/kafka/fetch.sh)")
        return JavaTxn(java_classes, bootstrap, tid)
    return ConfluentTxn(bootstrap, tid)


@contextlib.contextmanager
def proxied(broker: FaultBroker, *rules: Rule) -> Iterator[FaultProxy]:
    proxy = FaultProxy(broker.bootstrap, rules).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def new_topic_named(broker: FaultBroker, prefix: str) -> str:
    name = f"{prefix}-{next(names)}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, PROBE_PARTITIONS, 1)])[name].result(30)
    return name


def values(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


def run_transaction(client: ConfluentTxn | JavaTxn, topic: str, sent: list[str], commit: bool) -> None:
    client.begin()
    for i, value in enumerate(sent):
        client.send(topic, i % PROBE_PARTITIONS, value)
    client.flush()
    if commit:
        client.commit()
    else:
        client.abort()


def finish(client: ConfluentTxn | JavaTxn) -> str:
    """Commits; a transaction the client must abort is aborted. Returns what happened."""
    try:
        client.commit()
        return "committed"
    except ClientError as error:
        if error.fatal or not error.abortable:
            return f"failed: {error}"
    client.abort()
    return "aborted"


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
@pytest.mark.parametrize("kind", CLIENTS)
def test_a_real_clients_produce_delivered_after_its_transaction(
    broker: FaultBroker, kind: str, commit: bool, java_classes: Path | None
) -> None:
    """KAFKA-17754 with a real client: the proxy keeps the transaction's first Produce from the
    broker (the client sees a reset and sends the batch again); the kept copy is delivered on a
    connection of its own once the transaction completed, and again inside the next one."""
    topic = new_topic_named(broker, f"late-{kind}")
    capture = CaptureProduce()
    first, second = values("first", 6), values("next", 4)
    with proxied(broker, capture) as proxy:
        client = producer(kind, proxy.bootstrap, f"late-{kind}-{next(names)}", java_classes)
        try:
            client.init()
            run_transaction(client, topic, first, commit)
            assert stable(broker.bootstrap, topic, PROBE_PARTITIONS, SETTLE_S)
            after_complete = capture.deliver()
            client.begin()
            for i, value in enumerate(second):
                client.send(topic, i % PROBE_PARTITIONS, value)
            client.flush()
            in_next = capture.deliver()
            next_transaction = finish(client)
        finally:
            client.close()
    # A transaction left open by a client that failed is aborted at its timeout (short here).
    assert stable(broker.bootstrap, topic, PROBE_PARTITIONS, SETTLE_S), "a transaction was left open"
    committed = read_values(broker.bootstrap, topic, PROBE_PARTITIONS, "read_committed")
    everything = read_values(broker.bootstrap, topic, PROBE_PARTITIONS, "read_uncommitted")
    print(
        f"\n{broker.name} {kind} {'commit' if commit else 'abort'}: late Produce after Complete -> "
        f"{after_complete.name}, inside the next transaction -> {in_next.name}; next transaction "
        f"{next_transaction}; failed sends {client.failed}; client errors {client.errors}"
    )
    # The late copy is a batch the broker already has (the client sent it again): it is never
    # appended a second time, nor joins the next transaction.
    assert len(everything) == len(set(everything)), "the late copy was appended again"
    assert set(everything) <= set(first + second)
    fenced = ErrorCode.invalid_producer_epoch
    if kind == "java":  # TV2: the late copy carries the ended transaction's epoch
        assert (after_complete, in_next) == (fenced, fenced)
    else:  # TV1: refused outside a transaction; a duplicate (answered, not appended) inside one
        assert (after_complete, in_next) == (ErrorCode.invalid_txn_state, ErrorCode.none)
    if broker.name == "kafka" and kind == "confluent":
        # Kafka 4.4 remembers the refused copy's sequence (its verification state) and refuses
        # the next transaction's first batch on that partition OUT_OF_ORDER_SEQUENCE_NUMBER,
        # which librdkafka takes as fatal; the transaction stays open until its timeout aborts
        # it. tidelog answers the same codes to the late copy and goes on.
        assert [(e.name, e.fatal) for e in client.errors] == [("OUT_OF_ORDER_SEQUENCE_NUMBER", True)]
        assert next_transaction.startswith("failed")
    else:
        assert not client.errors, client.errors
        assert next_transaction == "committed"
    assert sorted(committed) == sorted((first if commit else []) + (second if next_transaction == "committed" else []))


def committed_with_retries(client: ConfluentTxn | JavaTxn, commit: bool) -> list[str]:
    """Ends the transaction as an application does: a retriable error means call it again."""
    seen = []
    for _ in range(END_ATTEMPTS):
        try:
            client.commit() if commit else client.abort()
            return seen
        except ClientError as error:
            seen.append(error.name)
            if not error.retriable or error.fatal:
                raise
    raise AssertionError(f"the transaction never ended: {seen}")


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
@pytest.mark.parametrize("kind", CLIENTS)
def test_a_dropped_end_txn_answer_is_retried_to_the_same_outcome(
    broker: FaultBroker, kind: str, commit: bool, java_classes: Path | None
) -> None:
    """EndTxn lands, its answer is lost with the connection: the client sends it again, the
    broker answers the retry CONCURRENT_TRANSACTIONS while the markers go out, then NONE, and
    the transaction ends once."""
    topic = new_topic_named(broker, f"endtxn-{kind}")
    codes, drop = AnswerCodes(END_TXN), DropAnswer(END_TXN)
    first, second = values("first", 6), values("next", 4)
    with proxied(broker, codes, drop) as proxy:
        client = producer(kind, proxy.bootstrap, f"endtxn-{kind}-{next(names)}", java_classes)
        try:
            client.init()
            client.begin()
            for i, value in enumerate(first):
                client.send(topic, i % PROBE_PARTITIONS, value)
            client.flush()
            app_retries = committed_with_retries(client, commit)
            run_transaction(client, topic, second, commit=True)
        finally:
            client.close()
        requests = proxy.counters["request:EndTxn"]
    print(
        f"\n{broker.name} {kind} {'commit' if commit else 'abort'}: EndTxn answers {[c.name for c in codes.codes]}"
        f" ({requests} requests), errors the application saw {app_retries}"
    )
    assert drop.fired and requests >= 3, "the dropped EndTxn was not sent again"
    # The dropped answer was NONE; every retry is answered CONCURRENT_TRANSACTIONS or NONE.
    assert codes.codes[0] == ErrorCode.none
    assert set(codes.codes) <= {ErrorCode.none, ErrorCode.concurrent_transactions}, codes.codes
    assert not [e for e in client.errors if e.fatal or not e.retriable], client.errors
    assert stable(broker.bootstrap, topic, PROBE_PARTITIONS, SETTLE_S), "a transaction was left open"
    committed = read_values(broker.bootstrap, topic, PROBE_PARTITIONS, "read_committed")
    everything = read_values(broker.bootstrap, topic, PROBE_PARTITIONS, "read_uncommitted")
    assert sorted(committed) == sorted((first if commit else []) + second)
    assert sorted(everything) == sorted(first + second)


RESETS = {
    # The connection is reset before the first AddPartitionsToTxn reaches the broker (TV2 adds
    # with its first Produce, so for Java that Produce is reset instead).
    "before-add": lambda kind: ResetBefore(PRODUCE if kind == "java" else ADD_PARTITIONS_TO_TXN),
    # The first Produce lands and its answer is lost: the client sends it again.
    "after-produce": lambda kind: DropAnswer(PRODUCE),
    # The connection is reset before EndTxn reaches the broker.
    "before-end": lambda kind: ResetBefore(END_TXN),
}


@pytest.mark.parametrize("where", list(RESETS))
@pytest.mark.parametrize("kind", CLIENTS)
def test_a_connection_reset_mid_transaction(
    broker: FaultBroker, kind: str, where: str, java_classes: Path | None
) -> None:
    """A reset at one point of a committed transaction, then a second transaction: each
    commits exactly once, all of its data and nothing twice, and no transaction stays open."""
    topic = new_topic_named(broker, f"reset-{kind}")
    fault = RESETS[where](kind)
    first, second = values("first", 6), values("next", 4)
    with proxied(broker, fault) as proxy:
        client = producer(kind, proxy.bootstrap, f"reset-{kind}-{next(names)}", java_classes)
        try:
            client.init()
            client.begin()
            for i, value in enumerate(first):
                client.send(topic, i % PROBE_PARTITIONS, value)
            client.flush()
            app_retries = committed_with_retries(client, commit=True)
            run_transaction(client, topic, second, commit=True)
        finally:
            client.close()
        counters = dict(proxy.counters)
    print(f"\n{broker.name} {kind} {where}: errors the application saw {app_retries}; proxy {counters}")
    assert fault.fired, f"the fault never happened: {counters}"
    assert not [e for e in client.errors if e.fatal or not e.retriable], client.errors
    assert sorted(client.acked) == sorted(first + second)
    assert stable(broker.bootstrap, topic, PROBE_PARTITIONS, SETTLE_S), "a transaction was left open"
    committed = read_values(broker.bootstrap, topic, PROBE_PARTITIONS, "read_committed")
    everything = read_values(broker.bootstrap, topic, PROBE_PARTITIONS, "read_uncommitted")
    assert sorted(committed) == sorted(first + second)
    assert sorted(everything) == sorted(first + second), "something was appended twice"


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_an_end_txn_whose_connection_closes_at_once_still_ends_the_transaction(
    broker: FaultBroker, commit: bool
) -> None:
    """A client that gives up on EndTxn (its request timed out) closes the connection before
    the answer: the broker still writes the markers, so the retry on a new connection is
    answered CONCURRENT_TRANSACTIONS for a moment, then NONE, and the partition is stable."""
    n = next(names)
    tid, topic = f"closing-{n}", f"closing-{n}"
    client = TxnClient(port_of(broker))
    try:
        make_topic(client, topic)
        pid, epoch = begin(client, tid)
        assert client.add_partitions(tid, pid, epoch, [(topic, 0)]) == {(topic, 0): ErrorCode.none}
        assert client.produce(tid, topic, 0, data_batch(pid, epoch, 0, [b"a", b"b"])).error_code == ErrorCode.none
        giving_up = TxnClient(port_of(broker))
        body = request(
            26, END_TXN_VERSION, transactional_id=tid, producer_id=pid, producer_epoch=epoch, committed=commit
        )
        giving_up.wire.send(26, END_TXN_VERSION, body)
        giving_up.close()
        answers = []
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            answers.append(client.end(tid, pid, epoch, commit, version=END_TXN_VERSION))
            if answers[-1] != ErrorCode.concurrent_transactions:
                break
            time.sleep(0.05)
        print(f"\n{broker.name}: EndTxn retries answered {[a.name for a in answers]}")
        assert answers[-1] == ErrorCode.none, answers
        assert set(answers[:-1]) <= {ErrorCode.concurrent_transactions}
        stable_after(client, topic, 0, 3)  # two records and the marker
        values = [r[1] for r in records_of(client.fetch(topic, 0, 0, READ_COMMITTED)) if not r[2]]
        fetched = client.fetch(topic, 0, 0, READ_COMMITTED)
        aborted = [int(t.producer_id) for t in fetched.aborted_transactions or ()]
        # The records are returned either way; an abort lists its producer for the reader to drop them.
        assert (values, aborted) == ([b"a", b"b"], [] if commit else [pid])
    finally:
        client.close()


def test_an_add_partitions_whose_connection_closed_during_a_pause(broker: FaultBroker) -> None:
    """The broker is frozen while a client sends AddPartitionsToTxn and gives up on it (closes
    the connection); once thawed the broker reads the request and the close together. Either
    broker may serve it (it read the request before it saw the close: the abort then answers
    NONE) or not (the abort finds no transaction: INVALID_TXN_STATE, which librdkafka takes as
    fatal, what test_pauses.py may see when messages expire during a pause); both outcomes were
    seen on Kafka 4.4 and on tidelog, depending on timing."""
    n = next(names)
    tid, topic = f"thawed-{n}", f"thawed-{n}"
    client = TxnClient(port_of(broker))
    try:
        make_topic(client, topic)
        pid, epoch = begin(client, tid)
        giving_up = TxnClient(port_of(broker))
        topics = (schema(24, 3, ["v3_and_below_topics"])(name=topic, partitions=(0,)),)
        body = request(
            24,
            3,
            v3_and_below_transactional_id=tid,
            v3_and_below_producer_id=pid,
            v3_and_below_producer_epoch=epoch,
            v3_and_below_topics=topics,
        )
        broker.pause()
        try:
            giving_up.wire.send(24, 3, body)
            giving_up.close()
            time.sleep(PAUSED_S)
        finally:
            broker.resume()
        answer = settled(lambda: client.end(tid, pid, epoch, commit=False, version=END_TXN_VERSION))
        print(f"\n{broker.name}: abort after the thawed AddPartitionsToTxn -> {answer.name}")
        assert answer in {ErrorCode.invalid_txn_state, ErrorCode.none}, answer
    finally:
        client.close()
