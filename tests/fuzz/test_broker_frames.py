"""Mutated request frames over TCP against a real broker (`tidelog serve`): every frame gets an
answer, a closed connection or (acks=0, held requests) silence within a deadline; the broker
process survives, no exception escapes a connection (asyncio's "Fatal error"), and a real client
(confluent-kafka) still produces and consumes afterwards.

Handlers that fail on a decoded but meaningless request (a null array where the schema has no
null, an unknown isolation level) close that connection with "internal error", as Kafka closes
on a malformed request; their count is printed, not refused (a known finding: they should
answer INVALID_REQUEST without a traceback)."""

from __future__ import annotations

import os
import random
import socket
import struct
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from tests.fuzz.frames import mutate
from tests.server.conftest import BrokerProcess, free_port

FRAMES = 400
ANSWER_TIMEOUT_S = 5.0
REGRESSIONS = Path(__file__).parent / "regressions"


def answered_or_closed(port: int, frame: bytes) -> str:
    """Sends one frame on a new connection: 'answered', 'closed', or raises on a hang."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT_S) as sock:
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        try:
            head = sock.recv(4)
        except ConnectionResetError:
            return "closed"
        except TimeoutError:
            # acks=0 produce and JoinGroup-like waits answer nothing: the broker must still be
            # serving; the caller checks it with a real client at the end.
            return "silent"
        return "answered" if head else "closed"


@pytest.fixture
def broker(tmp_path: Path) -> BrokerProcess:
    process = BrokerProcess(tmp_path / "data", free_port()).start()
    yield process
    process.stop()


def test_mutated_frames_leave_the_broker_serving(broker: BrokerProcess, seeds: list[bytes]) -> None:
    rng = random.Random(int(os.environ.get("TIDELOG_FUZZ_SEED", "0")))
    frames = [path.read_bytes() for path in sorted(REGRESSIONS.glob("*.bin"))]
    frames += [mutate(rng, rng.choice(seeds), seeds) for _ in range(FRAMES)]
    outcomes: dict[str, int] = {}
    for frame in frames:
        outcome = answered_or_closed(broker.port, frame)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert broker.process is not None and broker.process.poll() is None, f"broker died on {frame.hex()}"
    print(f"fuzz broker frames: {len(frames)} frames, {outcomes}")
    assert outcomes.get("closed", 0) > 0 and outcomes.get("answered", 0) > 0
    log = broker.log_text()
    assert "Fatal error" not in log and "Exception in callback" not in log, log[-4000:]
    print(f"fuzz broker frames: {log.count('internal error')} connections closed with 'internal error'")

    topic = f"after-fuzz-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    delivered: list[object] = []
    for i in range(10):
        producer.produce(topic, value=f"v{i}".encode(), on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(30) == 0
    assert delivered == [None] * 10
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < 10 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            values.append(message.value())
    consumer.close()
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(10))
