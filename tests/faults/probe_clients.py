"""Real transactional producers driven step by step for the fault probes, and the proxy rules the
probes use.

`ConfluentTxn` (librdkafka, TV1 whatever the broker finalizes) runs in this process;
`JavaTxn` runs kafka-clients 4.4 (`java/TxnDriver.java`, TV2 against a broker that finalizes
transaction.version=2) in a subprocess driven over stdin. Both answer each step or raise
`ClientError` with the client's own classification (fatal, abortable, retriable).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kio.index
import kio.serial
from confluent_kafka import KafkaException, Producer
from kio.schema.errors import ErrorCode

from tests.read_back import read_to_end
from tests.transactions.txn_wire import READ_COMMITTED, READ_UNCOMMITTED, TxnClient
from tidelog.verify.proxy import PRODUCE, Action, Request, decode_response

ROOT = Path(__file__).parents[2]
KAFKA_LIBS = ROOT / ".cache" / "kafka" / "libs"
DRIVER = Path(__file__).parent / "java" / "TxnDriver.java"
STEP_TIMEOUT_S = 60
READ_TIMEOUT_S = 60
# A transaction a failed client leaves open is aborted this soon (the brokers look each second).
TRANSACTION_TIMEOUT_MS = 6000
# Short client timeouts, so a lost answer is noticed and retried within a probe.
CONFLUENT_SETTINGS = {
    "request.timeout.ms": 3000,
    "socket.timeout.ms": 3000,
    "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 200,
    "retry.backoff.ms": 50,
    "linger.ms": 0,
}
JAVA_SETTINGS = {
    "request.timeout.ms": "3000",
    "delivery.timeout.ms": str(TRANSACTION_TIMEOUT_MS),
    "max.block.ms": "30000",
    "transaction.timeout.ms": str(TRANSACTION_TIMEOUT_MS),
    "reconnect.backoff.ms": "50",
    "reconnect.backoff.max.ms": "200",
    "retry.backoff.ms": "50",
    "linger.ms": "0",
}


class ClientError(Exception):
    def __init__(self, step: str, name: str, fatal: bool, abortable: bool, retriable: bool, message: str) -> None:
        kind = "fatal" if fatal else "abortable" if abortable else "retriable" if retriable else "error"
        super().__init__(f"{step}: {name} ({kind}) {message}")
        self.step, self.name, self.fatal, self.abortable, self.retriable = step, name, fatal, abortable, retriable


@dataclass
class TxnProducer:
    """What both drivers record: acknowledged values with their (partition, offset), failures."""

    acked: dict[str, tuple[int, int]] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)
    errors: list[ClientError] = field(default_factory=list)


class ConfluentTxn(TxnProducer):
    def __init__(self, bootstrap: str, transactional_id: str, **settings: Any) -> None:
        super().__init__()
        config = {"bootstrap.servers": bootstrap, "transactional.id": transactional_id, **CONFLUENT_SETTINGS}
        self.producer = Producer({**config, **settings})

    def _call(self, step: str, call: Callable[[], object]) -> None:
        try:
            call()
        except KafkaException as exception:
            error = exception.args[0]
            failure = ClientError(
                step, error.name(), error.fatal(), error.txn_requires_abort(), error.retriable(), error.str()
            )
            self.errors.append(failure)
            raise failure from exception

    def _report(self, error: Any, message: Any) -> None:
        value = message.value().decode()
        if error is None:
            self.acked[value] = (message.partition(), message.offset())
        else:
            self.failed.append((value, error.name()))
        return None

    def init(self) -> None:
        self._call("init", lambda: self.producer.init_transactions(STEP_TIMEOUT_S))

    def begin(self) -> None:
        self._call("begin", self.producer.begin_transaction)

    def send(self, topic: str, partition: int, value: str) -> None:
        self._call(
            "send", lambda: self.producer.produce(topic, value.encode(), partition=partition, on_delivery=self._report)
        )
        self.producer.poll(0)

    def flush(self) -> None:
        try:
            self.producer.flush(STEP_TIMEOUT_S)
        except SystemError:  # confluent-kafka 2.16 once a delivery failed in a transaction; commit tells why
            pass

    def commit(self) -> None:
        self._call("commit", lambda: self.producer.commit_transaction(STEP_TIMEOUT_S))

    def abort(self) -> None:
        self._call("abort", lambda: self.producer.abort_transaction(STEP_TIMEOUT_S))

    def close(self) -> None:
        with contextlib.suppress(SystemError):
            self.producer.flush(1)
        del self.producer  # its threads stop now, not when the test's frame goes


def compile_driver(into: Path) -> Path:
    """The Java driver's classes (javac once per session: the source launcher would compile it
    again at every start)."""
    if not (into / "TxnDriver.class").exists():
        into.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["javac", "-cp", f"{KAFKA_LIBS}/*", "-d", str(into), str(DRIVER)], check=True, timeout=STEP_TIMEOUT_S
        )
    return into


class JavaTxn(TxnProducer):
    def __init__(self, classes: Path, bootstrap: str, transactional_id: str, **settings: str) -> None:
        super().__init__()
        options = [f"{k}={v}" for k, v in {**JAVA_SETTINGS, **settings}.items()]
        command = ["java", "-cp", f"{KAFKA_LIBS}/*:{classes}", "TxnDriver", bootstrap, transactional_id, *options]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.lines: list[str] = []
        self._answers: list[str] = []
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            words = line.split(" ", 3)
            if words[0] == "ack":
                self.acked[words[1]] = (int(words[2]), int(words[3]))
            elif words[0] == "nack":
                self.failed.append((words[1], words[2]))
            elif words[0] in ("done", "error"):
                with self._arrived:
                    self._answers.append(line)
                    self._arrived.notify_all()
        with self._arrived:
            self._answers.append("error exit JavaExited the driver exited")
            self._arrived.notify_all()

    def _step(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        with self._arrived:
            assert self._arrived.wait_for(lambda: self._answers, STEP_TIMEOUT_S), f"no answer to {line}: {self.lines}"
            answer = self._answers.pop(0)
        if answer.startswith("error"):
            _, step, name, message = (answer.split(" ", 3) + [""])[:4]
            # kafka-clients' classes: fatal ones cannot be recovered from; abortable need an abort.
            fatal = name in JAVA_FATAL
            failure = ClientError(
                step, name, fatal, not fatal and name != "TimeoutException", name == "TimeoutException", message
            )
            self.errors.append(failure)
            raise failure

    def init(self) -> None:
        self._step("init")

    def begin(self) -> None:
        self._step("begin")

    def send(self, topic: str, partition: int, value: str) -> None:
        self._step(f"send {partition} {topic} {value}")

    def flush(self) -> None:
        self._step("flush")

    def commit(self) -> None:
        self._step("commit")

    def abort(self) -> None:
        self._step("abort")

    def close(self) -> None:
        try:
            self._step("close")
        except (AssertionError, ClientError, BrokenPipeError):
            pass
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(STEP_TIMEOUT_S)


# The exceptions kafka-clients raises as fatal for a transactional producer (it must be closed).
JAVA_FATAL = frozenset(
    {
        "ProducerFencedException",
        "InvalidProducerEpochException",
        "OutOfOrderSequenceException",
        "AuthorizationException",
        "TransactionalIdAuthorizationException",
        "UnsupportedVersionException",
        "InvalidTxnStateException",
        "IllegalStateException",
        "KafkaException",
    }
)


def read_values(bootstrap: str, topic: str, partitions: int, isolation: str) -> list[str]:
    """Every value of `topic` a consumer with `isolation` reads, to the end, in log order per
    partition."""
    return [v.decode() for v in read_to_end(bootstrap, topic, partitions, isolation, READ_TIMEOUT_S).values()]


def stable(bootstrap: str, topic: str, partitions: int, within_s: float) -> bool:
    """True once every partition's last stable offset (ListOffsets LATEST at read_committed)
    equals its high watermark (LATEST at read_uncommitted): no transaction left open."""
    client = TxnClient(int(bootstrap.rpartition(":")[2]))
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            ends = [
                [client.latest(topic, p, isolation) for p in range(partitions)]
                for isolation in (READ_COMMITTED, READ_UNCOMMITTED)
            ]
            if ends[0] == ends[1]:
                return True
            time.sleep(0.1)
        return False
    finally:
        client.close()


# ---- proxy rules ---------------------------------------------------------------------------


class Nth:
    """A rule acting on the `nth` request of one API (1 = the first), once."""

    healable = False

    def __init__(self, api_key: int, nth: int = 1) -> None:
        self.api_key, self.nth, self.seen, self.fired = api_key, nth, 0, False

    def _hit(self, request: Request) -> bool:
        if request.api_key != self.api_key or self.fired:
            return False
        self.seen += 1
        self.fired = self.seen == self.nth
        return self.fired

    def on_request(self, request: Request) -> Action | None:
        return None

    def on_response(self, request: Request, frame: bytes) -> Action | None:
        return None


class ResetBefore(Nth):
    """The connection is reset before the request reaches the broker."""

    def on_request(self, request: Request) -> Action | None:
        return Action(reset=True, name="reset") if self._hit(request) else None


class DropAnswer(Nth):
    """The request lands; its answer is lost with the connection."""

    def __init__(self, api_key: int, nth: int = 1) -> None:
        super().__init__(api_key, nth)
        self.requests: dict[tuple[int, int], bool] = {}

    def on_request(self, request: Request) -> Action | None:
        if self._hit(request):
            self.requests[(request.connection, request.correlation_id)] = True
        return None

    def on_response(self, request: Request, frame: bytes) -> Action | None:
        if self.requests.pop((request.connection, request.correlation_id), False):
            return Action(reset=True, name="drop")
        return None


class CaptureProduce(ResetBefore):
    """Keeps the first Produce of the transaction and never lets it reach the broker (the
    client sees its connection reset and sends the batch again); the test delivers the kept
    copy itself, late, on a connection of its own (`deliver`)."""

    def __init__(self) -> None:
        super().__init__(PRODUCE)
        self.captured: Request | None = None

    def on_request(self, request: Request) -> Action | None:
        action = super().on_request(request)
        if action is not None:
            self.captured = request
        return action

    def deliver(self) -> ErrorCode:
        """Sends the kept Produce straight to the broker and answers its partition's error."""
        assert self.captured is not None, "no Produce was captured"
        captured = self.captured
        with socket.create_connection(captured.upstream, timeout=STEP_TIMEOUT_S) as connection:
            connection.sendall(struct.pack(">i", len(captured.frame)) + captured.frame)
            size = struct.unpack(">i", _exactly(connection, 4))[0]
            frame = _exactly(connection, size)
        cls = kio.index.load_response_schema(PRODUCE, captured.api_version)
        at = 5 if cls.__flexible__ else 4
        response, _ = kio.serial.entity_reader(cls)(frame, at)
        return ErrorCode(int(response.responses[0].partition_responses[0].error_code))


def _exactly(connection: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        assert chunk, "the broker closed the connection"
        data += chunk
    return data


class AnswerCodes:
    """Records the top-level error code of every answer to one API (it changes nothing)."""

    healable = False

    def __init__(self, api_key: int) -> None:
        self.api_key = api_key
        self.codes: list[ErrorCode] = []

    def on_request(self, request: Request) -> Action | None:
        return None

    def on_response(self, request: Request, frame: bytes) -> Action | None:
        if request.api_key == self.api_key:
            response, _ = decode_response(request.api_key, request.api_version, frame)
            self.codes.append(ErrorCode(int(response.error_code)))
        return None
