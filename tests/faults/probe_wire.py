"""The KAFKA-17754 probe over raw requests: a transactional Produce sent in one transaction
reaches the broker only after that transaction's EndTxn, on a second connection, as a request
held back in the network or in a paused broker would.

Each probe returns what the broker did (`Outcome`): the late Produce's error code, where its
batch ended up, and whether the partition's last stable offset came back to its high
watermark. The tests decide what is acceptable; `docs/delivery-semantics.md` has the table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from tests.compat.test_differential import create_topics, new_topic, wait_for_leader
from tests.transactions.txn_wire import (
    READ_COMMITTED,
    READ_UNCOMMITTED,
    TxnClient,
    begin,
    data_batch,
    records_of,
    request,
    settled,
)

# Versions each transaction version speaks. TV1: Produce v11 (the last one without implicit
# adds) and EndTxn v4 (no epoch bump); TV2: Produce v12 (adds the partition itself) and EndTxn v5.
TV1_PRODUCE, TV1_END = 11, 4
TV2_PRODUCE, TV2_END = 12, 5
ADD_PARTITIONS_VERSION = 3
# How long the partition gets to settle (markers written, LSO back at the high watermark).
SETTLE_S = 15.0
# Where the late batch is sent: right after the EndTxn answer (markers may still be going
# out), once the transaction is complete, or once the next transaction has added the partition.
AFTER_END, AFTER_COMPLETE, IN_NEXT = "after-end", "after-complete", "in-next"
DESCRIBE_TRANSACTIONS = 65
COMPLETE_STATES = ("CompleteCommit", "CompleteAbort")


@dataclass
class Outcome:
    broker: str
    version: str  # "TV1" or "TV2"
    ended: str  # "commit" or "abort"
    when: str
    late_error: ErrorCode
    # Values read back at read_committed, in log order (the late batch's value is b"late").
    committed: list[bytes] = field(default_factory=list)
    uncommitted: list[bytes] = field(default_factory=list)
    late_after_end: bool = False  # the late batch was appended after the first transaction's marker
    late_in_next: bool = False  # ... and was committed with the next transaction
    stable: bool = False  # LSO == high watermark once settled (no hanging transaction)
    next_error: ErrorCode = ErrorCode.none  # the next transaction's own produce

    def placement(self) -> str:
        if self.late_in_next:
            return "committed in the next transaction"
        if b"late" in self.uncommitted:
            return "appended in its own transaction"
        return "not appended"

    def row(self) -> str:
        return (
            f"{self.broker} {self.version} {self.ended} {self.when}: late Produce -> {self.late_error.name}; "
            f"late batch {self.placement()}"
            f"; next produce {self.next_error.name}; LSO {'= HW' if self.stable else 'stuck'}; "
            f"read_committed {self.committed}"
        )


def make_topic(client: TxnClient, name: str) -> None:
    assert create_topics(client.wire, new_topic(name, 1))[0].error_code == ErrorCode.none
    wait_for_leader(client.wire, name)


def _produce(client: TxnClient, tid: str, topic: str, batch: bytes, version: int) -> ErrorCode:
    return ErrorCode(int(client.produce(tid, topic, 0, batch, version=version).error_code))


def _stable(client: TxnClient, topic: str) -> bool:
    """Waits until the last stable offset reaches the high watermark; False if it never does."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        if client.latest(topic, 0, READ_COMMITTED) == client.latest(topic, 0, READ_UNCOMMITTED):
            return True
        time.sleep(0.05)
    return False


def _complete(client: TxnClient, transactional_id: str) -> bool:
    """Waits until the coordinator has completed the transaction (DescribeTransactions says
    CompleteCommit or CompleteAbort); False if it never does. The partition's markers (LSO back
    at the high watermark) come before that on Kafka: its coordinator writes Complete after the
    markers' answers, and verification meanwhile answers CONCURRENT_TRANSACTIONS."""
    body = request(DESCRIBE_TRANSACTIONS, 0, transactional_ids=(transactional_id,))
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        state = client.wire.request(DESCRIBE_TRANSACTIONS, 0, body).transaction_states[0].transaction_state
        if state in COMPLETE_STATES:
            return True
        time.sleep(0.05)
    return False


def _values(client: TxnClient, topic: str, isolation: int) -> list[bytes]:
    fetched = client.fetch(topic, 0, 0, isolation)
    aborted = {(int(t.producer_id), int(t.first_offset)) for t in fetched.aborted_transactions or ()}
    out = []
    records = records_of(fetched)
    # Drop aborted data as a read_committed client does: from an aborted transaction's first
    # offset up to that producer's ABORT marker.
    open_aborts: dict[int, bool] = {}
    for offset, value, control, pid in records:
        for aborted_pid, first in aborted:
            if aborted_pid == pid and first == offset:
                open_aborts[pid] = True
        if control:
            open_aborts.pop(pid, None)
            continue
        if isolation == READ_COMMITTED and open_aborts.get(pid):
            continue
        out.append(value or b"")
    return out


def _log(client: TxnClient, topic: str) -> list[tuple[int, bytes | None, bool, int]]:
    return records_of(client.fetch(topic, 0, 0, READ_UNCOMMITTED))


def probe(
    port: int, broker: str, version: str, commit: bool, when: str, tid: str, topic: str, produce_version: int = 0
) -> Outcome:
    """One late Produce. `version` picks the requests' versions (the broker speaks both);
    `produce_version` another Produce version within it."""
    produce_v, end_v = (TV1_PRODUCE, TV1_END) if version == "TV1" else (TV2_PRODUCE, TV2_END)
    produce_v = produce_version or produce_v
    coordinator, late_connection = TxnClient(port), TxnClient(port)

    def add(epoch: int) -> None:
        if version == "TV1":
            added = settled(
                lambda: coordinator.add_partitions(tid, pid, epoch, [(topic, 0)], version=ADD_PARTITIONS_VERSION)
            )
            assert added == {(topic, 0): ErrorCode.none}, added

    try:
        make_topic(coordinator, topic)
        pid, epoch = begin(coordinator, tid)
        add(epoch)
        first = _produce(coordinator, tid, topic, data_batch(pid, epoch, 0, [b"first"]), produce_v)
        assert first == ErrorCode.none, first
        # The batch that will be late: sequence 1, built now, in this transaction's epoch.
        late = data_batch(pid, epoch, 1, [b"late"])
        ended = coordinator.end_answer(tid, pid, epoch, commit=commit, version=end_v)
        assert ended.error_code == ErrorCode.none, ended
        next_epoch = int(ended.producer_epoch) if end_v >= 5 else epoch
        if when != AFTER_END:
            assert _stable(coordinator, topic), "the first transaction never completed"
            assert _complete(coordinator, tid), "the coordinator never completed the first transaction"
        next_sent = False
        if when == IN_NEXT:
            # The next transaction has the partition before the late batch arrives: TV1 by its
            # AddPartitionsToTxn, TV2 by its first produce (the implicit add).
            add(next_epoch)
            if version == "TV2":
                next_error = _produce(coordinator, tid, topic, data_batch(pid, next_epoch, 0, [b"next"]), produce_v)
                next_sent = True
        late_error = _produce(late_connection, tid, topic, late, produce_v)
        outcome = Outcome(broker, version, "commit" if commit else "abort", when, late_error)
        if not next_sent:
            if when != IN_NEXT:
                assert _stable(coordinator, topic), "the first transaction never completed"
                add(next_epoch)
            # The next transaction's own batch follows whatever the partition took.
            sequence = 0 if next_epoch != epoch else (2 if late_error == ErrorCode.none else 1)
            next_error = _produce(coordinator, tid, topic, data_batch(pid, next_epoch, sequence, [b"next"]), produce_v)
        outcome.next_error = next_error
        committed = settled(lambda: coordinator.end_answer(tid, pid, next_epoch, commit=True, version=end_v).error_code)
        assert committed == ErrorCode.none, committed
        outcome.stable = _stable(coordinator, topic)
        outcome.committed = _values(coordinator, topic, READ_COMMITTED)
        outcome.uncommitted = _values(coordinator, topic, READ_UNCOMMITTED)
        log = _log(coordinator, topic)
        first_marker = next(offset for offset, _, control, _ in log if control)
        late_offsets = [offset for offset, value, control, _ in log if value == b"late" and not control]
        outcome.late_after_end = bool(late_offsets) and late_offsets[0] > first_marker
        outcome.late_in_next = outcome.late_after_end and b"late" in outcome.committed
        return outcome
    finally:
        coordinator.close()
        late_connection.close()
