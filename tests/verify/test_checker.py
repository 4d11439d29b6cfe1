"""The checker on hand-made histories: each anomaly found where it is, and nowhere else."""

from __future__ import annotations

from tidelog.verify.checker import (
    ABORTED_READ,
    DUPLICATE,
    G0,
    INCONSISTENT_OFFSETS,
    LOST_WRITE,
    NONMONOTONIC_POLL,
    POLL_SKIP,
    UNCOMMITTED_READ,
    UNSEEN,
    Result,
    check,
)
from tidelog.verify.history import (
    ASSIGN,
    FAIL,
    FINAL,
    INFO,
    OK,
    POLL,
    READ_COMMITTED,
    READ_UNCOMMITTED,
    RESET,
    SEND,
    TXN,
    Mop,
    Op,
    number,
)

A = "t/0"
B = "t/1"


class History:
    """Builds a history in order; times advance by one per operation."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.clock = 0.0

    def op(self, process: int, f: str, type_: str, mops: list[Mop], **extra: object) -> Op:
        self.clock += 1
        op = Op(process, f, type_, self.clock, self.clock + 0.5, mops, **extra)  # type: ignore[arg-type]
        self.ops.append(op)
        return op

    def send(self, process: int, key: str, offset: int | None, value: str, type_: str = OK) -> Op:
        return self.op(process, SEND, type_, [Mop(SEND, key, offset, value)])

    def txn(self, process: int, type_: str, sends: list[tuple[str, int | None, str]], committed: bool = True) -> Op:
        op = self.op(process, TXN, type_, [Mop(SEND, k, o, v) for k, o, v in sends])
        if committed:
            op.commit_invoke = op.invoke + 0.25
        return op

    def poll(self, process: int, records: list[tuple[str, int, str]], f: str = POLL) -> Op:
        at = self.clock + 1.25
        return self.op(process, f, OK, [Mop(POLL, k, o, v, at) for k, o, v in records])

    def assign(self, process: int, *keys: str) -> Op:
        return self.op(process, ASSIGN, OK, [Mop(RESET, key, at=self.clock + 1) for key in keys])

    def final(self, records: dict[str, list[tuple[int, str]]], isolation: str = READ_COMMITTED) -> Op:
        mops = [Mop(POLL, key, offset, value) for key, rows in records.items() for offset, value in rows]
        ends = {key: (rows[-1][0] + 1 if rows else 0) for key, rows in records.items()}
        return self.op(-1, FINAL, OK, mops, isolation=isolation, ends=ends)

    def check(self, workload: str = "txn") -> Result:
        return check(number(self.ops), workload)


def only(result: Result, *names: str) -> None:
    found = {name for name, count in result.counts.items() if count}
    assert found == set(names), result.anomalies


def test_a_clean_history_has_no_anomaly() -> None:
    h = History()
    h.send(1, A, 0, "1-0")
    h.send(1, A, 1, "1-1")
    h.send(2, B, 0, "2-0")
    h.poll(3, [(A, 0, "1-0"), (A, 1, "1-1")])
    h.poll(3, [(B, 0, "2-0")])
    h.final({A: [(0, "1-0"), (1, "1-1")], B: [(0, "2-0")]})
    result = h.check("idempotent")
    only(result)
    assert result.valid
    assert result.stats["sends-ok"] == 3 and result.stats["send-ok"] == 3


def test_an_acknowledged_send_missing_from_the_final_read_is_lost() -> None:
    h = History()
    h.send(1, A, 0, "1-0")
    lost = h.send(1, A, 1, "1-1")
    h.send(1, A, 2, "1-2")
    h.final({A: [(0, "1-0"), (2, "1-2")]})
    result = h.check("idempotent")
    only(result, LOST_WRITE)
    (example,) = result.anomalies[LOST_WRITE]
    assert example["value"] == "1-1" and example["offset"] == 1 and lost.index in example["ops"]
    assert not result.valid


def test_a_value_read_once_then_gone_from_the_final_read_is_lost() -> None:
    h = History()
    h.send(1, A, 0, "1-0", type_=INFO)  # indeterminate, but a consumer received it
    h.poll(2, [(A, 0, "1-0")])
    h.final({A: []})
    only(h.check("idempotent"), LOST_WRITE)


def test_without_a_finished_final_read_values_above_every_read_are_unseen() -> None:
    h = History()
    h.send(1, A, 0, "1-0")
    h.send(1, A, 1, "1-1")
    h.send(1, A, 2, "1-2")
    h.poll(2, [(A, 1, "1-1")])
    final = h.final({A: [(1, "1-1")]})
    final.ends = {}  # it timed out before the end of the partition
    result = h.check("idempotent")
    assert [e["value"] for e in result.anomalies[LOST_WRITE]] == ["1-0"]  # below the highest read
    assert [e["value"] for e in result.anomalies[UNSEEN]] == ["1-2"]  # above it
    only(result, LOST_WRITE, UNSEEN)


def test_indeterminate_and_failed_sends_may_be_absent() -> None:
    h = History()
    h.send(1, A, None, "1-0", type_=INFO)
    h.txn(1, FAIL, [(A, 0, "1-1")], committed=False)
    h.send(1, A, 1, "1-2")
    h.final({A: [(1, "1-2")]})
    only(h.check())


def test_one_value_at_two_offsets_is_a_duplicate_even_when_indeterminate() -> None:
    h = History()
    h.send(1, A, None, "1-0", type_=INFO)
    h.send(1, A, 2, "1-1")
    h.final({A: [(0, "1-0"), (1, "1-0"), (2, "1-1")]})
    result = h.check("idempotent")
    only(result, DUPLICATE)
    assert result.anomalies[DUPLICATE][0]["positions"] == [[A, 0], [A, 1]]


def test_duplicates_are_allowed_by_the_at_least_once_queue() -> None:
    h = History()
    h.send(1, A, 1, "1-0")
    h.final({A: [(0, "1-0"), (1, "1-0")]})
    result = h.check("queue")
    only(result, DUPLICATE)
    assert result.valid


def test_one_offset_two_values_is_inconsistent() -> None:
    h = History()
    h.send(1, A, 0, "1-0")
    h.send(2, A, 1, "2-0")
    h.poll(3, [(A, 0, "1-0"), (A, 1, "1-1")])  # a read disagrees with an acknowledgement
    h.send(1, A, 5, "1-1", type_=INFO)
    h.final({A: [(0, "1-0"), (1, "2-0")]})
    result = h.check("idempotent")
    assert [(e["offset"], e["values"]) for e in result.anomalies[INCONSISTENT_OFFSETS]] == [(1, ["1-1", "2-0"])]
    assert INCONSISTENT_OFFSETS in result.forbidden


def test_an_aborted_value_read_at_read_committed_is_g1a() -> None:
    h = History()
    aborted = h.txn(1, FAIL, [(A, 0, "1-0")], committed=False)
    h.txn(1, OK, [(A, 2, "1-1")])
    reader = h.poll(2, [(A, 0, "1-0"), (A, 2, "1-1")], f=TXN)
    h.final({A: [(2, "1-1")]})
    h.final({A: [(0, "1-0"), (2, "1-1")]}, isolation=READ_UNCOMMITTED)
    result = h.check()
    only(result, ABORTED_READ)
    (example,) = result.anomalies[ABORTED_READ]
    assert example["ops"] == [aborted.index, reader.index] and example["offset"] == 0


def test_an_aborted_value_in_the_final_read_committed_is_g1a_too() -> None:
    h = History()
    h.txn(1, FAIL, [(A, 0, "1-0")], committed=False)
    h.final({A: [(0, "1-0")]})
    only(h.check(), ABORTED_READ)


def test_reading_a_value_before_its_transaction_asked_to_commit_is_an_uncommitted_read() -> None:
    h = History()
    writer = h.txn(1, OK, [(A, 0, "1-0")])
    writer.commit_invoke = 100.0  # long after the read below
    h.poll(2, [(A, 0, "1-0")], f=TXN)
    h.final({A: [(0, "1-0")]})
    result = h.check()
    only(result, UNCOMMITTED_READ)
    assert result.anomalies[UNCOMMITTED_READ][0]["commit_invoked"] == 100.0


def test_reading_a_committed_value_after_its_commit_is_fine() -> None:
    h = History()
    h.txn(1, OK, [(A, 0, "1-0")])
    h.poll(2, [(A, 0, "1-0")], f=TXN)
    h.final({A: [(0, "1-0")]})
    only(h.check())


def test_a_consumer_jumping_over_visible_records_skips() -> None:
    h = History()
    for offset in range(4):
        h.send(1, A, offset, f"1-{offset}")
    h.poll(2, [(A, 0, "1-0")])
    skip = h.poll(2, [(A, 3, "1-3")])
    h.final({A: [(o, f"1-{o}") for o in range(4)]})
    result = h.check("idempotent")
    only(result, POLL_SKIP)
    (example,) = result.anomalies[POLL_SKIP]
    assert example["skipped"] == [1, 2] and example["within_one_poll"] is False and skip.index in example["ops"]


def test_a_skip_inside_one_poll_is_found() -> None:
    h = History()
    for offset in range(3):
        h.send(1, A, offset, f"1-{offset}")
    h.poll(2, [(A, 0, "1-0"), (A, 2, "1-2")])
    h.final({A: [(o, f"1-{o}") for o in range(3)]})
    result = h.check("idempotent")
    only(result, POLL_SKIP)
    assert result.anomalies[POLL_SKIP][0]["within_one_poll"] is True


def test_gaps_of_aborted_records_and_markers_are_not_skips_at_read_committed() -> None:
    h = History()
    h.txn(1, OK, [(A, 0, "1-0")])
    h.txn(1, FAIL, [(A, 2, "1-1")], committed=False)  # marker at 1 and 3
    h.txn(1, OK, [(A, 4, "1-2")])
    h.poll(2, [(A, 0, "1-0")], f=TXN)
    h.poll(2, [(A, 4, "1-2")], f=TXN)
    h.final({A: [(0, "1-0"), (4, "1-2")]})
    h.final({A: [(0, "1-0"), (2, "1-1"), (4, "1-2")]}, isolation=READ_UNCOMMITTED)
    only(h.check())


def test_a_consumer_going_back_is_nonmonotonic_unless_its_position_was_reset() -> None:
    h = History()
    for offset in range(3):
        h.send(1, A, offset, f"1-{offset}")
    h.poll(2, [(A, 0, "1-0"), (A, 1, "1-1")])
    h.assign(2, A)  # a rebalance: resuming from the committed offset is fine
    h.poll(2, [(A, 1, "1-1"), (A, 2, "1-2")])
    h.poll(3, [(A, 1, "1-1")])
    h.poll(3, [(A, 1, "1-1")])  # the same record again, no reset between
    h.final({A: [(o, f"1-{o}") for o in range(3)]})
    result = h.check("idempotent")
    only(result, NONMONOTONIC_POLL)
    (example,) = result.anomalies[NONMONOTONIC_POLL]
    assert example["process"] == 3 and example["from_offset"] == example["to_offset"] == 1


def test_polls_of_different_consumers_and_keys_are_independent() -> None:
    h = History()
    h.send(1, A, 0, "1-0")
    h.send(1, B, 0, "1-1")
    h.poll(2, [(A, 0, "1-0")])
    h.poll(3, [(A, 0, "1-0")])
    h.poll(2, [(B, 0, "1-1")])
    h.final({A: [(0, "1-0")], B: [(0, "1-1")]})
    only(h.check("idempotent"))


def test_a_write_cycle_between_committed_transactions_is_g0_and_allowed() -> None:
    h = History()
    t1 = h.txn(1, OK, [(A, 0, "1-0"), (B, 1, "1-1")])
    t2 = h.txn(2, OK, [(A, 1, "2-0"), (B, 0, "2-1")])
    h.final({A: [(0, "1-0"), (1, "2-0")], B: [(0, "2-1"), (1, "1-1")]})
    result = h.check()
    only(result, G0)
    assert result.anomalies[G0][0]["ops"] == sorted([t1.index, t2.index])
    assert result.valid


def test_transactions_in_one_order_everywhere_make_no_cycle() -> None:
    h = History()
    h.txn(1, OK, [(A, 0, "1-0"), (B, 0, "1-1")])
    h.txn(2, OK, [(A, 1, "2-0"), (B, 1, "2-1")])
    h.txn(3, FAIL, [(A, 2, "3-0")], committed=False)
    h.final({A: [(0, "1-0"), (1, "2-0")], B: [(0, "1-1"), (1, "2-1")]})
    only(h.check())


def test_the_result_round_trips_to_json() -> None:
    import json

    h = History()
    h.send(1, A, 0, "1-0")
    h.final({A: []})
    data = json.loads(json.dumps(h.check("idempotent").to_json()))
    assert data["valid"] is False and data["counts"][LOST_WRITE] == 1
