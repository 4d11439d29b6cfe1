"""Apache Kafka's own Java tools (kafka-clients 4.4, TV1: no transaction.version feature is
advertised) against a real broker: `TransactionalMessageCopier` copies a partition exactly
once through random aborts, and `kafka-transactions.sh` lists, describes and aborts."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kio.index
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.errors import ErrorCode

from tests.server.conftest import BrokerProcess, free_port, wait_until
from tests.transactions.test_confluent_transactions import read_all
from tests.transactions.txn_wire import READ_COMMITTED, TxnClient, data_batch

LIBS = Path(__file__).parents[2] / ".cache" / "kafka" / "libs"
pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or not any(LIBS.glob("kafka-tools-*.jar")),
    reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)",
)
TIMEOUT_S = 120
RECORDS = 600
TRANSACTION_SIZE = 50


def java(tool: str, *args: str) -> str:
    command = ["java", "-cp", f"{LIBS}/*", f"org.apache.kafka.tools.{tool}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(params=["2", "1"], ids=["TV2", "TV1"])
def broker(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[BrokerProcess]:
    settings = {
        "transaction.state.log.num.partitions": "3",
        "offsets.topic.num.partitions": "3",
        "tidelog.transaction.version": request.param,
    }
    process = BrokerProcess(tmp_path / "data", free_port(), settings).start()
    admin = AdminClient({"bootstrap.servers": process.bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in ("input", "output")]).values():
        future.result(30)
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


def test_transactional_message_copier_copies_exactly_once(broker: BrokerProcess) -> None:
    """With transaction.version=2 finalized the Java client speaks TV2 (the epoch goes up at
    every commit or abort); with no feature advertised it falls back to TV1 (the epoch stays)."""
    seed = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(RECORDS):
        seed.produce("input", value=f"m-{i}".encode(), partition=0)
    seed.flush(30)
    out = java(
        "TransactionalMessageCopier",
        "--broker-list",
        broker.bootstrap,
        "--transactional-id",
        "copier-java",
        "--consumer-group",
        "copier-group",
        "--input-topic",
        "input",
        "--input-partition",
        "0",
        "--output-topic",
        "output",
        "--transaction-size",
        str(TRANSACTION_SIZE),
        "--enable-random-aborts",
        "--use-group-metadata",
    )
    last = json.loads(out.strip().splitlines()[-1])
    assert last["remaining"] == 0, last
    copied = read_all(broker, "output", "read_committed", partitions=1)
    assert copied == sorted(f"m-{i}".encode() for i in range(RECORDS)), "each input record once"
    body = kio.index.load_request_schema(65, 0)(transactional_ids=("copier-java",))
    client = TxnClient(broker.port)
    (state,) = client.wire.request(65, 0, body).transaction_states
    client.close()
    transactions = RECORDS // TRANSACTION_SIZE
    if broker.settings["tidelog.transaction.version"] == "2":
        assert state.producer_epoch >= transactions, "TV2: one epoch per transaction"
    else:
        assert state.producer_epoch == 0, "TV1: the epoch is InitProducerId's"


def test_kafka_transactions_lists_describes_and_aborts(broker: BrokerProcess) -> None:
    server = ["--bootstrap-server", broker.bootstrap]
    client = TxnClient(broker.port)
    try:
        answer = client.init("hanging")
        pid, epoch = int(answer.producer_id), int(answer.producer_epoch)
        assert client.add_partitions("hanging", pid, epoch, [("output", 0)]) == {("output", 0): ErrorCode.none}
        assert client.produce("hanging", "output", 0, data_batch(pid, epoch, 0, [b"h0", b"h1"])).error_code == 0
        listed = java("TransactionsCommand", *server, "list")
        assert "hanging" in listed and "Ongoing" in listed and str(pid) in listed
        described = java("TransactionsCommand", *server, "describe", "--transactional-id", "hanging")
        assert "Ongoing" in described and "output-0" in described
        producers = java("TransactionsCommand", *server, "describe-producers", "--topic", "output", "--partition", "0")
        assert str(pid) in producers
        # An operator aborts it from the data partition's side (a WriteTxnMarkers of its own).
        java("TransactionsCommand", *server, "abort", "--topic", "output", "--partition", "0", "--start-offset", "0")
        wait_until(lambda: client.latest("output", 0, READ_COMMITTED) == 3)
        aborted = client.fetch("output", 0, 0, READ_COMMITTED).aborted_transactions
        assert [(a.producer_id, a.first_offset) for a in aborted] == [(pid, 0)]
    finally:
        client.close()
