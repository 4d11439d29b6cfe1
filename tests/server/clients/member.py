"""One consumer-group member in its own process, so a test can close it or SIGKILL it.

    python -m tests.server.clients.member LIB BOOTSTRAP TOPIC GROUP [--session-ms N]
        [--strategy S] [--instance-id ID]

LIB is confluent, kafka-python or aiokafka. The member subscribes to TOPIC and prints one JSON
object per line on stdout, flushed at once:
  {"event": "assigned" | "revoked", "partitions": [...]}   from the rebalance callbacks
  {"event": "assignment", "partitions": [...]}             the whole assignment, when it changes
  {"event": "closed"}                                      after a clean close (SIGTERM)
SIGTERM closes the consumer (which sends LeaveGroup unless it is a static member) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

HEARTBEAT_MS = 300
POLL_S = 0.1


def say(event: str, partitions: object = None) -> None:
    message: dict[str, object] = {"event": event}
    if partitions is not None:
        message["partitions"] = sorted(partitions)  # type: ignore[call-overload]
    print(json.dumps(message), flush=True)


def run_confluent(args: argparse.Namespace, stop: list[bool]) -> None:
    from confluent_kafka import Consumer

    config: dict[str, object] = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "enable.auto.commit": False,
        "session.timeout.ms": args.session_ms,
        "heartbeat.interval.ms": HEARTBEAT_MS,
        "max.poll.interval.ms": 20_000,
        "partition.assignment.strategy": args.strategy or "range",
    }
    if args.instance_id:
        config["group.instance.id"] = args.instance_id
    consumer = Consumer(config)
    consumer.subscribe(
        [args.topic],
        on_assign=lambda _c, tps: say("assigned", [tp.partition for tp in tps]),
        on_revoke=lambda _c, tps: say("revoked", [tp.partition for tp in tps]),
    )
    last = None
    while not stop[0]:
        consumer.poll(POLL_S)
        now = sorted(tp.partition for tp in consumer.assignment())
        if now != last:
            say("assignment", now)
            last = now
    consumer.close()


def run_kafka_python(args: argparse.Namespace, stop: list[bool]) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        session_timeout_ms=args.session_ms,
        heartbeat_interval_ms=HEARTBEAT_MS,
        max_poll_interval_ms=20_000,
        group_instance_id=args.instance_id,
    )
    consumer.subscribe([args.topic])
    last = None
    while not stop[0]:
        consumer.poll(timeout_ms=int(POLL_S * 1000))
        now = sorted(tp.partition for tp in consumer.assignment())
        if now != last:
            say("assignment", now)
            last = now
    consumer.close()


async def run_aiokafka(args: argparse.Namespace, stop: list[bool]) -> None:
    from aiokafka import AIOKafkaConsumer

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: stop.__setitem__(0, True))
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        session_timeout_ms=args.session_ms,
        heartbeat_interval_ms=HEARTBEAT_MS,
        max_poll_interval_ms=20_000,
        group_instance_id=args.instance_id,
    )
    await consumer.start()
    last = None
    while not stop[0]:
        await consumer.getmany(timeout_ms=int(POLL_S * 1000))
        now = sorted(tp.partition for tp in consumer.assignment())
        if now != last:
            say("assignment", now)
            last = now
    await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("lib", choices=["confluent", "kafka-python", "aiokafka"])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("--session-ms", type=int, default=3000)
    parser.add_argument("--strategy")
    parser.add_argument("--instance-id")
    args = parser.parse_args()
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    if args.lib == "confluent":
        run_confluent(args, stop)
    elif args.lib == "kafka-python":
        run_kafka_python(args, stop)
    else:
        asyncio.run(run_aiokafka(args, stop))
    say("closed")
    sys.exit(0)


if __name__ == "__main__":
    main()
