"""A transactional copier for the fault tests, as Kafka's TransactionalMessageCopier works: a
read_committed group consumer of `input`, a producer with its own transactional id writing each
record to the same partition of `output`, the consumer's positions sent to the transaction;
every third transaction aborted and the consumer rewound to its committed offsets. On an
abortable error it aborts and rewinds too; on a fatal one it exits (the test starts it again
with the same transactional id, which fences what it left).

A watchdog ends the process (exit status 4) when a transactional call outlives its own timeout
by WATCHDOG_GRACE_S: librdkafka's send_offsets_to_transaction can wait forever for a group
coordinator connection whose state never changes again (confluentinc/librdkafka#5456 and #5511,
open in 2.16), while its consumer waits for this thread to poll through a rebalance. The test
restarts the copier, as a supervisor restarts a stuck application, and counts these exits.

    python tests/faults/copier.py <bootstrap> <transactional id> <group>
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

BATCH = 200
ABORT_EVERY = 3
API_TIMEOUT_S = 30
COMMIT_TIMEOUT_S = 60
WATCHDOG_GRACE_S = 15
WATCHDOG_EXIT = 4
T = TypeVar("T")


class Watchdog:
    """Exits the process when a call it watches runs WATCHDOG_GRACE_S past its own timeout."""

    def __init__(self) -> None:
        self.deadline = float("inf")
        self.what = ""
        threading.Thread(target=self._watch, daemon=True).start()

    def call(self, timeout_s: float, function: Callable[..., T], *args: object) -> T:
        """function(*args, timeout_s), watched."""
        self.what, self.deadline = function.__name__, time.monotonic() + timeout_s + WATCHDOG_GRACE_S
        try:
            return function(*args, timeout_s)
        finally:
            self.deadline = float("inf")

    def _watch(self) -> None:
        while True:
            time.sleep(1)
            if time.monotonic() > self.deadline:
                print(f"copier stops: {self.what} still waiting past its timeout", file=sys.stderr, flush=True)
                os._exit(WATCHDOG_EXIT)


def debug(contexts: str) -> dict[str, str]:
    """librdkafka's own log of `contexts` when COPIER_DEBUG is set (to see where a copier waits)."""
    return {"debug": contexts} if os.environ.get("COPIER_DEBUG") else {}


def rewind(consumer: Consumer) -> None:
    assignment = consumer.assignment()
    if not assignment:
        return
    for tp in consumer.committed(assignment, API_TIMEOUT_S):
        consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))


def main(bootstrap: str, transactional_id: str, group: str) -> None:
    faulthandler.register(signal.SIGUSR1)  # the test asks for the stack of a copier that is stuck
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            **debug("cgrp"),
        }
    )
    # A rebalance inside consume() can hand back records of a partition this copier no longer
    # owns, read before the revocation, with group metadata of the new generation: committing
    # them would copy what the partition's new owner copies too. Such a batch is dropped and the
    # copier rewinds to the committed offsets, as after an abort.
    rebalanced = [False]

    def on_rebalance(_consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        rebalanced[0] = True

    consumer.subscribe(["input"], on_assign=on_rebalance, on_revoke=on_rebalance)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "linger.ms": 5,
            "transaction.timeout.ms": 10000,
            **debug("eos,protocol"),
        }
    )
    watchdog = Watchdog()
    watchdog.call(COMMIT_TIMEOUT_S, producer.init_transactions)
    turn = 0
    while True:
        rebalanced[0] = False
        messages = [m for m in consumer.consume(BATCH, 1.0) if not m.error()]
        if rebalanced[0]:
            rewind(consumer)
            continue
        if not messages:
            continue
        turn += 1
        try:
            producer.begin_transaction()
            for m in messages:
                producer.produce("output", value=m.value(), partition=m.partition())
            if turn % ABORT_EVERY == 0:
                producer.flush(API_TIMEOUT_S)
                watchdog.call(API_TIMEOUT_S, producer.abort_transaction)
                rewind(consumer)
                continue
            positions = consumer.position(consumer.assignment())
            group = consumer.consumer_group_metadata()
            watchdog.call(API_TIMEOUT_S, producer.send_offsets_to_transaction, positions, group)
            watchdog.call(COMMIT_TIMEOUT_S, producer.commit_transaction)
        except KafkaException as failure:
            error = failure.args[0]
            if not error.txn_requires_abort():  # fatal, or a commit that may have happened
                print(f"copier stops: {error}", file=sys.stderr, flush=True)
                sys.exit(3)
            watchdog.call(COMMIT_TIMEOUT_S, producer.abort_transaction)
            rewind(consumer)


if __name__ == "__main__":
    main(*sys.argv[1:4])
