"""A transactional copier for the fault tests, as Kafka's TransactionalMessageCopier works: a
read_committed group consumer of `input`, a producer with its own transactional id writing each
record to the same partition of `output`, the consumer's positions sent to the transaction;
every third transaction aborted and the consumer rewound to its committed offsets. On an
abortable error it aborts and rewinds too; on a fatal one it exits (the test starts it again
with the same transactional id, which fences what it left).

    python tests/faults/copier.py <bootstrap> <transactional id> <group>
"""

from __future__ import annotations

import faulthandler
import signal
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

BATCH = 200
ABORT_EVERY = 3


def rewind(consumer: Consumer) -> None:
    assignment = consumer.assignment()
    if not assignment:
        return
    for tp in consumer.committed(assignment, 30):
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
        }
    )
    consumer.subscribe(["input"])
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "linger.ms": 5,
            "transaction.timeout.ms": 10000,
        }
    )
    producer.init_transactions(60)
    turn = 0
    while True:
        messages = [m for m in consumer.consume(BATCH, 1.0) if not m.error()]
        if not messages:
            continue
        turn += 1
        try:
            producer.begin_transaction()
            for m in messages:
                producer.produce("output", value=m.value(), partition=m.partition())
            if turn % ABORT_EVERY == 0:
                producer.flush(30)
                producer.abort_transaction(30)
                rewind(consumer)
                continue
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
            )
            producer.commit_transaction(60)
        except KafkaException as failure:
            error = failure.args[0]
            if not error.txn_requires_abort():  # fatal, or a commit that may have happened
                print(f"copier stops: {error}", file=sys.stderr, flush=True)
                sys.exit(3)
            producer.abort_transaction(60)
            rewind(consumer)


if __name__ == "__main__":
    main(*sys.argv[1:4])
