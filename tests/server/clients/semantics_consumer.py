"""A consumer with a chosen delivery guarantee, for tests that kill it (or the broker) mid-way.

    python -m tests.server.clients.semantics_consumer LIB MODE BOOTSTRAP TOPIC GROUP OUT --end N
        [--chunk C] [--crash-at K] [--pause-after-commits M] [--work-ms W]

LIB: confluent or kafka-python. Reads partition 0 of TOPIC in group GROUP, C records at a time,
until it has handled offset N-1. "Processing" a record appends "offset value" to OUT and fsyncs.
MODE:
  at-most-once        commit the chunk's end (synchronously), then process its records
  at-least-once       process the chunk's records, then commit its end (synchronously)
  at-least-once-auto  (confluent) enable.auto.commit with enable.auto.offset.store=false:
                      each record's offset is stored (store_offsets) after it is processed
--crash-at K: the process SIGKILLs itself at record K: in at-most-once after the commit and
  before processing K; in the at-least-once modes after processing K and before committing
  (or storing) it.
--pause-after-commits M: after its M-th commit, prints {"event": "paused"} and waits for a line
  on stdin before polling again (the test kills and restarts the broker meanwhile).
Prints {"event": "committed", "offset": o} per commit and {"event": "done"} at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

SESSION_MS = 2000
HEARTBEAT_MS = 300
MAX_POLL_INTERVAL_MS = 15_000


def say(**event: object) -> None:
    print(json.dumps(event), flush=True)


class Records:
    """Polls one record at a time and commits, for one library."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.topic = args.topic
        self.reassigned = False
        if args.lib == "confluent":
            from confluent_kafka import Consumer, TopicPartition

            self.TopicPartition = TopicPartition
            config: dict[str, object] = {
                "bootstrap.servers": args.bootstrap,
                "group.id": args.group,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": SESSION_MS,
                "heartbeat.interval.ms": HEARTBEAT_MS,
                "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
                "enable.auto.commit": False,
            }
            if args.mode == "at-least-once-auto":
                config.update(
                    {"enable.auto.commit": True, "enable.auto.offset.store": False, "auto.commit.interval.ms": 50}
                )
            self.consumer: Any = Consumer(config)
            self.consumer.subscribe([self.topic], on_assign=self._on_assign)
        else:
            from kafka import ConsumerRebalanceListener, KafkaConsumer
            from kafka import TopicPartition as KTopicPartition
            from kafka.structs import OffsetAndMetadata

            owner = self

            class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
                def on_partitions_revoked(self, revoked: object) -> None:
                    pass

                def on_partitions_assigned(self, assigned: object) -> None:
                    owner.reassigned = True

            self.KTopicPartition, self.OffsetAndMetadata = KTopicPartition, OffsetAndMetadata
            self.consumer = KafkaConsumer(
                bootstrap_servers=args.bootstrap,
                group_id=args.group,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                session_timeout_ms=SESSION_MS,
                heartbeat_interval_ms=HEARTBEAT_MS,
                max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            )
            self.consumer.subscribe([self.topic], listener=Listener())

    def _on_assign(self, consumer: Any, partitions: Any) -> None:
        self.reassigned = True

    def poll(self) -> tuple[int, bytes] | None:
        if self.args.lib == "confluent":
            message = self.consumer.poll(0.2)
            if message is None:
                return None
            if message.error() is not None:
                raise RuntimeError(message.error())
            return message.offset(), message.value()
        batches = self.consumer.poll(timeout_ms=200, max_records=1)
        for messages in batches.values():
            for m in messages:
                return m.offset, m.value
        return None

    def commit(self, offset: int) -> None:
        if self.args.lib == "confluent":
            self.consumer.commit(offsets=[self.TopicPartition(self.topic, 0, offset)], asynchronous=False)
        else:
            self.consumer.commit({self.KTopicPartition(self.topic, 0): self.OffsetAndMetadata(offset, "", -1)})
        say(event="committed", offset=offset)

    def store(self, offset: int) -> None:
        self.consumer.store_offsets(offsets=[self.TopicPartition(self.topic, 0, offset)])

    def close(self) -> None:
        self.consumer.close()


def crash() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("lib", choices=["confluent", "kafka-python"])
    parser.add_argument("mode", choices=["at-most-once", "at-least-once", "at-least-once-auto"])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("out")
    parser.add_argument("--end", type=int, required=True)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--crash-at", type=int)
    parser.add_argument("--pause-after-commits", type=int)
    parser.add_argument("--work-ms", type=int, default=0)
    args = parser.parse_args()
    if args.mode == "at-least-once-auto" and args.lib != "confluent":
        parser.error("at-least-once-auto is a librdkafka (confluent) mode")

    out = os.open(args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def process(offset: int, value: bytes) -> None:
        time.sleep(args.work_ms / 1000)
        os.write(out, b"%d %s\n" % (offset, value))
        os.fsync(out)

    records = Records(args)
    commits = 0
    handled = -1  # the last offset handled
    deadline = time.monotonic() + 60
    while handled < args.end - 1:
        chunk: list[tuple[int, bytes]] = []
        while len(chunk) < args.chunk and (not chunk or chunk[-1][0] < args.end - 1):
            if time.monotonic() > deadline:
                raise SystemExit(f"stuck after offset {handled}")
            record = records.poll()
            if records.reassigned:  # a rebalance: the position is the committed offset again
                records.reassigned = False
                chunk = []
            if record is not None:
                chunk.append(record)
        end = chunk[-1][0] + 1
        if args.mode == "at-most-once":
            records.commit(end)
            commits += 1
            for offset, value in chunk:
                if offset == args.crash_at:
                    crash()
                process(offset, value)
        else:
            for offset, value in chunk:
                process(offset, value)
                if offset == args.crash_at:
                    crash()
                if args.mode == "at-least-once-auto":
                    records.store(offset + 1)
            if args.mode == "at-least-once":
                records.commit(end)
                commits += 1
        handled = end - 1
        if commits == args.pause_after_commits and args.mode != "at-least-once-auto":
            say(event="paused")
            sys.stdin.readline()
            args.pause_after_commits = None
    records.close()
    os.close(out)
    say(event="done")


if __name__ == "__main__":
    main()
