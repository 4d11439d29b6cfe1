"""The worker processes of a verify run (confluent-kafka), and the final reads.

Each worker runs one stream of operations until its deadline and appends every completed
operation to its own JSON-lines file (`history.Op`):

- `txn`: transactions of 1 to `MOPS_PER_TXN_MAX` micro-operations, each a send of a unique value
  to a random partition or a poll of the worker's read_committed group consumer; a share is
  aborted (then the consumer is rewound to its committed offsets), the others send the
  consumer's positions to the transaction (`send_offsets_to_transaction`) and commit;
- `idempotent`: single sends of an idempotent producer (acks=all) and polls of a group consumer
  that commits its offsets after each poll;
- `queue`: the same with a plain at-least-once producer (acks=all, retries, no idempotence).

Values are `<worker>-<n>`, unique in the run. A client that fails fatally is rebuilt and takes
a new process number; what it had in flight is indeterminate.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
)

WORKLOADS = ("queue", "txn", "idempotent")

# Operations a worker starts per second at most (keeps histories checkable: 300 s x 4 workers).
OPS_PER_SECOND_PER_WORKER = 100
# A transaction holds 1..MOPS_PER_TXN_MAX sends and polls.
MOPS_PER_TXN_MAX = 4
SEND_SHARE = 0.6
ABORT_SHARE = 0.2
# Records one poll asks for, and how long it waits for the first.
POLL_RECORDS_MAX = 50
POLL_TIMEOUT_S = 0.1
# Sends of the idempotent and queue workloads not yet acknowledged, at most.
SENDS_IN_FLIGHT_MAX = 200
# Client timeouts: long enough to ride out faults, short enough for a run of minutes.
TRANSACTION_TIMEOUT_MS = 30_000
MESSAGE_TIMEOUT_MS = 30_000
SESSION_TIMEOUT_MS = 10_000
CALL_TIMEOUT_S = 30.0
# librdkafka (2.16) can wait in send_offsets_to_transaction far past its own timeout, for ever,
# for a group coordinator connection whose state does not change again (#5456, #5511); past
# CALL_TIMEOUT_S + STUCK_GRACE_S the worker leaves that producer and consumer behind and builds
# new ones (init_transactions fences the old and aborts its transaction).
STUCK_GRACE_S = 10.0
COMMIT_ATTEMPTS_MAX = 3
# Process numbers: worker w's clients are w * PROCESS_STRIDE, + 1 after a rebuild, ...
PROCESS_STRIDE = 1000
# A finished worker waits this long for its last acknowledgements.
FLUSH_TIMEOUT_S = 30.0
# The final read of all partitions gives up after this long without progress.
FINAL_READ_IDLE_TIMEOUT_S = 30.0
FINAL_READ_BATCH = 1000


@dataclass(frozen=True)
class WorkerSpec:
    worker: int
    bootstrap: str
    workload: str
    topics: tuple[str, ...]
    partitions: int
    group: str
    transactional_prefix: str
    seed: int
    start: float  # time.monotonic() at the start of the run (the history's zero)
    duration_s: float
    history_path: str
    # Flush before a deliberate abort, so that the abort purges no batch that was sent and whose
    # answer was lost: librdkafka (2.16) advances the epoch's base sequence past the messages an
    # abort purges, sent or not, so the next transaction's first batch to that partition takes
    # the sequence of a batch that may be in the log, and any Kafka broker acknowledges it as
    # that batch's duplicate without writing it (a lost write; see docs/verify.md).
    flush_before_abort: bool = False


def key_of(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def record_mop(message: Any, at: float | None) -> Mop:
    """A consumed record as a poll micro-operation."""
    key = key_of(str(message.topic()), int(message.partition()))
    return Mop(POLL, key, int(message.offset()), (message.value() or b"").decode(), at)


def split_key(key: str) -> tuple[str, int]:
    topic, _, partition = key.rpartition("/")
    return topic, int(partition)


class _Recorder:
    def __init__(self, spec: WorkerSpec, out: IO[str], counters: Any) -> None:
        self.spec = spec
        self.out = out
        self.counters = counters

    def now(self) -> float:
        return time.monotonic() - self.spec.start

    def write(self, op: Op) -> None:
        self.out.write(json.dumps(op.to_json()) + "\n")
        self.out.flush()
        if self.counters is not None:
            slot = {OK: 0, FAIL: 1, INFO: 2}[op.type]
            self.counters[slot] += 1


def run_worker(spec: WorkerSpec, counters: Any = None) -> None:
    """A worker process's body (multiprocessing target)."""
    with Path(spec.history_path).open("a") as out:
        recorder = _Recorder(spec, out, counters)
        if spec.workload == "txn":
            _TxnWorker(spec, recorder).run()
        else:
            _SendPollWorker(spec, recorder).run()


class _Base:
    def __init__(self, spec: WorkerSpec, recorder: _Recorder) -> None:
        self.spec = spec
        self.recorder = recorder
        self.random = random.Random(spec.seed * PROCESS_STRIDE + spec.worker)
        self.process = spec.worker * PROCESS_STRIDE
        self.counter = 0
        self.keys = [key_of(t, p) for t in spec.topics for p in range(spec.partitions)]
        self.resets: list[Mop] = []
        self.consumer: Any = None

    def next_value(self) -> str:
        self.counter += 1
        return f"{self.spec.worker}-{self.counter}"

    def new_producer(self) -> None:
        raise NotImplementedError

    def renew_clients(self) -> None:
        """A new process number and new clients, tried until they start or the run ends."""
        self.process += 1
        while not self.deadline_passed():
            try:
                self.new_producer()
                self.new_consumer()
                return
            except Exception:
                time.sleep(1)

    def deadline_passed(self) -> bool:
        return self.recorder.now() >= self.spec.duration_s

    def pace(self, started: float) -> None:
        spare = 1.0 / OPS_PER_SECOND_PER_WORKER - (self.recorder.now() - started)
        if spare > 0:
            time.sleep(spare)

    def consumer_config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.spec.bootstrap,
            "group.id": self.spec.group,
            "isolation.level": READ_COMMITTED,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": SESSION_TIMEOUT_MS // 5,
        }

    def new_consumer(self) -> None:
        from confluent_kafka import Consumer

        if self.consumer is not None:
            try:
                self.consumer.close()
            except Exception:
                pass
        self.consumer = Consumer(self.consumer_config())
        self.consumer.subscribe(
            list(self.spec.topics), on_assign=self._on_change, on_revoke=self._on_change, on_lost=self._on_change
        )
        self.reset_all()

    def _on_change(self, _consumer: Any, partitions: list[Any]) -> None:
        at = self.recorder.now()
        self.resets += [Mop(RESET, key_of(tp.topic, tp.partition), at=at) for tp in partitions]

    def reset_all(self) -> None:
        at = self.recorder.now()
        self.resets += [Mop(RESET, key, at=at) for key in self.keys]

    def flush_resets(self) -> None:
        if self.resets:
            at = self.resets[0].at or self.recorder.now()
            self.recorder.write(Op(self.process, ASSIGN, OK, at, self.recorder.now(), self.resets))
            self.resets = []

    def poll_mops(self) -> list[Mop]:
        messages = self.consumer.consume(POLL_RECORDS_MAX, POLL_TIMEOUT_S)
        at = self.recorder.now()
        self.flush_resets()  # assignments made during consume() come before its records
        return [record_mop(m, at) for m in messages if m.error() is None]


class StuckCall(Exception):
    """A client call outlived its own timeout by STUCK_GRACE_S."""


def bounded(function: Any, *args: Any) -> Any:
    """function(*args) in a thread of its own, given up on (StuckCall) when it does not return
    within CALL_TIMEOUT_S + STUCK_GRACE_S; the thread, a daemon, keeps the stuck client alive."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = function(*args)
        except BaseException as error:  # handed to the caller as it is
            outcome["error"] = error

    thread = threading.Thread(target=call, name="bounded-call", daemon=True)
    thread.start()
    thread.join(CALL_TIMEOUT_S + STUCK_GRACE_S)
    if thread.is_alive():
        raise StuckCall(getattr(function, "__name__", "call"))
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class _TxnWorker(_Base):
    def __init__(self, spec: WorkerSpec, recorder: _Recorder) -> None:
        super().__init__(spec, recorder)
        self.producer: Any = None

    def new_producer(self) -> None:
        from confluent_kafka import Producer

        self.producer = Producer(
            {
                "bootstrap.servers": self.spec.bootstrap,
                "transactional.id": f"{self.spec.transactional_prefix}-{self.spec.worker}",
                "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                "message.timeout.ms": MESSAGE_TIMEOUT_MS,
                "linger.ms": 5,
            }
        )
        self.producer.init_transactions(CALL_TIMEOUT_S)

    def rebuild(self) -> None:
        """A fatal error: new clients, a new process number (init_transactions fences the old)."""
        self.renew_clients()

    def rewind(self) -> None:
        """After an abort: back to the committed offsets (Kafka consumers do not rewind)."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        assignment = self.consumer.assignment()
        self.reset_all()
        if not assignment:
            return
        try:
            # Only partitions read from since their assignment or last seek: the others are at
            # their committed offset already, and may still be looking up where to start
            # (auto.offset.reset: a ListOffsets in flight). librdkafka (2.16) answers a seek
            # made during that lookup by retrying the lookup later and moving the position
            # back to its result while it fetches, so the worker would read a partition
            # again from its start with no reset to tell (docs/verify.md).
            started = [tp for tp in self.consumer.position(assignment) if tp.offset >= 0]
            if not started:
                return
            for tp in self.consumer.committed(started, CALL_TIMEOUT_S):
                offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        except Exception:
            pass

    def run(self) -> None:
        self.rebuild_first()
        while not self.deadline_passed():
            started = self.recorder.now()
            self.transaction()
            self.pace(started)
        try:
            self.consumer.close()
        except Exception:
            pass

    def rebuild_first(self) -> None:
        self.process -= 1
        self.rebuild()

    def transaction(self) -> None:
        from confluent_kafka import KafkaException

        op = Op(self.process, TXN, INFO, self.recorder.now(), 0.0)
        stage = "begin"
        try:
            self.producer.begin_transaction()
            stage = "ops"
            for _ in range(self.random.randint(1, MOPS_PER_TXN_MAX)):
                if self.random.random() < SEND_SHARE:
                    op.mops.append(self.send())
                else:
                    op.mops += self.poll_mops()
                self.producer.poll(0)
            if self.random.random() < ABORT_SHARE:
                stage = "abort"
                if self.spec.flush_before_abort:
                    self.producer.flush(FLUSH_TIMEOUT_S)
                self.producer.abort_transaction(CALL_TIMEOUT_S)
                op.type = FAIL
                self.rewind()
            else:
                stage = "offsets"
                positions = [tp for tp in self.consumer.position(self.consumer.assignment()) if tp.offset >= 0]
                if positions:
                    bounded(
                        self.producer.send_offsets_to_transaction,
                        positions,
                        self.consumer.consumer_group_metadata(),
                        CALL_TIMEOUT_S,
                    )
                stage = "commit"
                op.commit_invoke = self.recorder.now()
                op.type = self.commit()
        except StuckCall as stuck:
            # Commit was never asked for: the new producer's init_transactions aborts it.
            op.error = f"{stage}: {stuck} stuck past its timeout (librdkafka #5456)"
            op.type = FAIL
            self.finish(op)
            self.rebuild()
            return
        except KafkaException as failure:
            error = failure.args[0]
            op.error = f"{stage}: {error.name()}"
            if error.txn_requires_abort() and stage != "commit":
                try:
                    self.producer.abort_transaction(CALL_TIMEOUT_S)
                    op.type = FAIL
                    self.rewind()
                except KafkaException as abort_failure:
                    op.error += f"; abort: {abort_failure.args[0].name()}"
                    op.type = INFO
                    self.finish(op)
                    self.rebuild()
                    return
            else:
                op.type = INFO
                self.finish(op)
                self.rebuild()
                return
        self.finish(op)

    def finish(self, op: Op) -> None:
        op.complete = self.recorder.now()
        self.recorder.write(op)

    def commit(self) -> str:
        """Commits, retrying what librdkafka calls retriable; OK, FAIL (aborted) or INFO."""
        from confluent_kafka import KafkaException

        for attempt in range(COMMIT_ATTEMPTS_MAX):
            try:
                self.producer.commit_transaction(CALL_TIMEOUT_S)
                return OK
            except KafkaException as failure:
                error = failure.args[0]
                if error.txn_requires_abort():
                    # The commit did not happen (librdkafka says abort); never abort after a
                    # commit that timed out, which stays retriable.
                    self.producer.abort_transaction(CALL_TIMEOUT_S)
                    self.rewind()
                    return FAIL
                if not error.retriable() or attempt == COMMIT_ATTEMPTS_MAX - 1:
                    raise
        raise AssertionError("unreachable")

    def send(self) -> Mop:
        key = self.random.choice(self.keys)
        topic, partition = split_key(key)
        mop = Mop(SEND, key, None, self.next_value())

        def delivered(error: Any, message: Any, mop: Mop = mop) -> None:
            offset = message.offset() if error is None else None
            if offset is not None and offset >= 0:
                mop.offset = offset

        self.producer.produce(
            topic, value=mop.value.encode() if mop.value else b"", partition=partition, on_delivery=delivered
        )
        return mop


class _SendPollWorker(_Base):
    """The idempotent and queue workloads: sends acknowledged one by one, polls committed."""

    def __init__(self, spec: WorkerSpec, recorder: _Recorder) -> None:
        super().__init__(spec, recorder)
        self.producer: Any = None
        self.in_flight: dict[str, Op] = {}

    def new_producer(self) -> None:
        from confluent_kafka import Producer

        self.producer = Producer(
            {
                "bootstrap.servers": self.spec.bootstrap,
                "enable.idempotence": self.spec.workload == "idempotent",
                "acks": "all",
                "message.timeout.ms": MESSAGE_TIMEOUT_MS,
                "linger.ms": 5,
            }
        )

    def give_up_in_flight(self, reason: str) -> None:
        for op in self.in_flight.values():
            op.type, op.error, op.complete = INFO, reason, self.recorder.now()
            self.recorder.write(op)
        self.in_flight.clear()

    def run(self) -> None:
        self.new_producer()
        self.new_consumer()
        while not self.deadline_passed():
            started = self.recorder.now()
            try:
                if self.random.random() < SEND_SHARE:
                    self.send()
                else:
                    self.poll()
                self.producer.poll(0)
            except Exception as failure:
                self.rebuild(repr(failure))
            self.pace(started)
        self.producer.flush(FLUSH_TIMEOUT_S)
        self.give_up_in_flight("not acknowledged at the end")
        try:
            self.consumer.close()
        except Exception:
            pass

    def rebuild(self, reason: str) -> None:
        self.give_up_in_flight(reason)
        self.renew_clients()

    def send(self) -> None:
        while len(self.in_flight) >= SENDS_IN_FLIGHT_MAX and not self.deadline_passed():
            self.producer.poll(POLL_TIMEOUT_S)
        key = self.random.choice(self.keys)
        topic, partition = split_key(key)
        value = self.next_value()
        op = Op(self.process, SEND, INFO, self.recorder.now(), 0.0, [Mop(SEND, key, None, value)])
        self.in_flight[value] = op
        self.producer.produce(topic, value=value.encode(), partition=partition, on_delivery=self._delivered(op))

    def _delivered(self, op: Op) -> Callable[[Any, Any], None]:
        def delivered(error: Any, message: Any) -> None:
            value = op.mops[0].value or ""
            if self.in_flight.pop(value, None) is None:
                return  # already given up on (the producer was rebuilt)
            op.complete = self.recorder.now()
            if error is None:
                op.type = OK
                offset = message.offset()  # None or negative: acknowledged at an unknown offset
                op.mops[0].offset = offset if offset is not None and offset >= 0 else None
            else:
                op.error = error.name()
                if error.fatal():
                    self.needs_rebuild = True
            self.recorder.write(op)

        return delivered

    needs_rebuild = False

    def poll(self) -> None:
        if self.needs_rebuild:
            self.needs_rebuild = False
            raise RuntimeError("fatal producer error")
        invoke = self.recorder.now()
        mops = self.poll_mops()
        if mops:
            self.recorder.write(Op(self.process, POLL, OK, invoke, self.recorder.now(), mops))
            try:
                self.consumer.commit(asynchronous=False)
            except Exception:
                pass


def final_read(bootstrap: str, topics: list[str], partitions: int, isolation: str, start: float) -> Op:
    """Every partition read from its start to its end (the high watermark, or the last stable
    offset at read_committed) as one operation; `ends` holds the keys read to their end."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    invoke = time.monotonic() - start
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-final-{isolation}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in range(partitions)]
    targets: dict[str, int] = {}
    for tp in parts:
        _, high = consumer.get_watermark_offsets(tp, CALL_TIMEOUT_S, cached=False)
        targets[key_of(tp.topic, tp.partition)] = high
    consumer.assign(parts)
    mops: list[Mop] = []
    ends: dict[str, int] = {}
    last_progress = time.monotonic()
    while len(ends) < len(targets) and time.monotonic() - last_progress < FINAL_READ_IDLE_TIMEOUT_S:
        messages = consumer.consume(FINAL_READ_BATCH, POLL_TIMEOUT_S * 5)
        for m in messages:
            if m.error() is None:
                mops.append(record_mop(m, None))
                last_progress = time.monotonic()
        for tp in consumer.position([TopicPartition(t.topic, t.partition) for t in parts]):
            key = key_of(tp.topic, tp.partition)
            if key not in ends and (targets[key] == 0 or tp.offset >= targets[key]):
                ends[key] = targets[key]
    consumer.close()
    isolation_name = READ_COMMITTED if isolation == READ_COMMITTED else READ_UNCOMMITTED
    return Op(-1, FINAL, OK, invoke, time.monotonic() - start, mops, isolation=isolation_name, ends=ends)
