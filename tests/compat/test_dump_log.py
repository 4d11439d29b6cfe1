"""`tidelog dump-log` prints what Kafka 4.4's kafka-dump-log prints for the same files, line for
line: a segment with plain, gzip- and zstd-compressed batches, an aborted and a committed
transaction and their markers (--deep-iteration --print-data-log), its `.index`, `.timeindex`
and `.txnindex`, and `__consumer_offsets` and `__transaction_state` through their decoders. The
producer snapshot, tidelog's own format, shows the producers the partition remembers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from tests.compat.conftest import KAFKA_LIBS, kafka_available
from tests.compat.test_compaction_differential import SHORT_JVM, TOOL_TIMEOUT_S
from tests.server.conftest import BrokerProcess, free_port

pytestmark = pytest.mark.skipif(not kafka_available(), reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)")
SETTINGS = {
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.num.partitions": "1",
    "group.initial.rebalance.delay.ms": "0",
}
PLAIN = 2000


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("dump") / "data"
    broker = BrokerProcess(data, free_port(), SETTINGS).start()
    try:
        producer = Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "compression.type": "gzip",
                "linger.ms": 5,
                "batch.num.messages": 100,
            }
        )
        for i in range(PLAIN):
            producer.produce("dumped", key=f"k{i}", value=f"v{i}" * 20, headers=[("h", b"1")], partition=0)
        assert producer.flush(30) == 0
        txn = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "tx", "compression.type": "zstd"})
        txn.init_transactions(30)
        txn.begin_transaction()
        for _ in range(20):
            txn.produce("dumped", value=b"a" * 300, partition=0)
        assert txn.flush(30) == 0
        txn.abort_transaction(30)
        txn.begin_transaction()
        txn.produce("dumped", value=b"c", partition=0)
        txn.commit_transaction(30)
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g", "auto.offset.reset": "earliest"})
        consumer.subscribe(["dumped"])
        read = 0
        while read < 10:
            message = consumer.poll(10)
            assert message is not None
            read += message.error() is None
        consumer.commit(asynchronous=False)
        consumer.close()
    finally:
        broker.stop()
    return data


def kafka_dump(*arguments: str) -> list[str]:
    command = ["java", *SHORT_JVM, "-cp", f"{KAFKA_LIBS}/*", "org.apache.kafka.tools.DumpLogSegments", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def tidelog_dump(*arguments: str) -> list[str]:
    command = [sys.executable, "-m", "tidelog", "dump-log", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("suffix", [".log", ".index", ".timeindex", ".txnindex"])
def test_a_partitions_files_print_as_kafka_prints_them(data_dir: Path, suffix: str) -> None:
    path = str(data_dir / "dumped-0" / f"00000000000000000000{suffix}")
    ours = tidelog_dump("--deep-iteration", "--print-data-log", path)
    assert ours == kafka_dump("--files", path, "--deep-iteration", "--print-data-log")
    assert len(ours) >= 2 and "is empty" not in ours[-1]


def test_the_dump_shows_codecs_transactions_and_markers(data_dir: Path) -> None:
    lines = tidelog_dump("--deep-iteration", str(data_dir / "dumped-0" / "00000000000000000000.log"))
    batches = [line for line in lines if line.startswith("baseOffset:")]
    assert {"compresscodec: gzip", "compresscodec: zstd"} <= {
        f"compresscodec: {b.split('compresscodec: ')[1].split()[0]}" for b in batches
    }
    assert sum("endTxnMarker: ABORT" in line for line in lines) == 1
    assert sum("endTxnMarker: COMMIT" in line for line in lines) == 1
    assert all("isvalid: true" in b for b in batches)


@pytest.mark.parametrize(
    "topic, decoder",
    [("__consumer_offsets", "--offsets-decoder"), ("__transaction_state", "--transaction-log-decoder")],
)
def test_the_internal_topics_decode_as_kafka_decodes_them(data_dir: Path, topic: str, decoder: str) -> None:
    path = str(data_dir / f"{topic}-0" / "00000000000000000000.log")
    ours = tidelog_dump(decoder, path)
    assert ours == kafka_dump("--files", path, decoder)
    assert any('"type":' in line for line in ours)


def test_the_producer_snapshot_shows_the_transactional_producer(data_dir: Path) -> None:
    [snapshot] = sorted((data_dir / "dumped-0").glob("*.snapshot"))
    lines = tidelog_dump(str(snapshot))
    [producer] = lines[1:]
    assert producer.startswith(
        "producerId: 0 producerEpoch: 0 coordinatorEpoch: 0 currentTxnFirstOffset: OptionalLong.empty"
    )
    assert "lastSequence: 20" in producer  # the committed record came after the 20 aborted ones
