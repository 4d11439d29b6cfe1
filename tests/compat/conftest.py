"""Differential tests: each scenario runs against tidelog and against Apache Kafka 4.x (a real
single-node KRaft broker from Maven Central's jars, see bench/kafka/) when Java and the jars are
present, and asserts the same observable result on both."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from tests.server.conftest import BrokerProcess, broker, free_port  # noqa: F401  (broker: a fixture for this folder too)

ROOT = Path(__file__).parents[2]
KAFKA_LIBS = ROOT / ".cache" / "kafka" / "libs"
# The log cleaner of the compaction brokers looks for work this often (Kafka's default: 15 s).
CLEANER_BACKOFF_MS = 100
ADMIN_TIMEOUT_S = 20


def kafka_available() -> bool:
    return shutil.which("java") is not None and any(KAFKA_LIBS.glob("kafka_2.13-*.jar"))


def load_reference_broker() -> object:
    spec = importlib.util.spec_from_file_location("reference_broker", ROOT / "bench" / "kafka" / "reference_broker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class CompactingBroker:
    """A broker whose log cleaner looks for work every `CLEANER_BACKOFF_MS`; `logs` holds its
    partition directories (`<topic>-<partition>`)."""

    name: str
    port: int
    logs: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def partition_dir(self, topic: str, partition: int = 0) -> Path:
        return self.logs / f"{topic}-{partition}"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompactingBroker]:
    """The one reference Kafka of the session; its cleaner runs at Kafka's default pace until
    `kafka_compaction` asks for more."""
    if not kafka_available():
        pytest.skip("needs Java and the Kafka jars (bench/kafka/fetch.sh)")
    reference = load_reference_broker()
    port = free_port()
    data = tmp_path_factory.mktemp("kafka")
    process = reference.start(data, port)  # type: ignore[attr-defined]
    yield CompactingBroker("kafka", port, data / "logs")
    reference.stop(process)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def kafka_port(kafka_broker: CompactingBroker) -> int:
    return kafka_broker.port


@pytest.fixture(scope="session")
def kafka_compaction(kafka_broker: CompactingBroker) -> CompactingBroker:
    """The session's Kafka with a fast cleaner: log.cleaner.backoff.ms is a dynamic broker
    setting in Kafka (the cleaner threads restart with it), so no second JVM is started. Only
    compacted topics whose segments roll see the difference."""
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    backoff = str(CLEANER_BACKOFF_MS)
    setting = ConfigEntry("log.cleaner.backoff.ms", backoff, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("broker", "1", incremental_configs=[setting])
    admin.incremental_alter_configs([resource])[resource].result(ADMIN_TIMEOUT_S)
    return kafka_broker


@pytest.fixture(scope="session")
def tidelog_compaction(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompactingBroker]:
    """A tidelog broker set as `kafka_compaction` is (its own process: the cleaner's pace is a
    start-up setting here)."""
    settings = {"group.initial.rebalance.delay.ms": "0", "log.cleaner.backoff.ms": str(CLEANER_BACKOFF_MS)}
    data = tmp_path_factory.mktemp("tidelog-compaction") / "data"
    process = BrokerProcess(data, free_port(), settings).start()
    yield CompactingBroker("tidelog", process.port, data)
    process.stop()


@pytest.fixture(params=["tidelog", "kafka"])
def compacting(request: pytest.FixtureRequest) -> CompactingBroker:
    """The broker under test for compaction scenarios: the same visible result on both."""
    chosen = request.getfixturevalue(f"{request.param}_compaction")
    assert isinstance(chosen, CompactingBroker)
    return chosen


@pytest.fixture(scope="session")
def tidelog_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    # As the reference Kafka is configured: no initial rebalance delay for new groups.
    settings = {"group.initial.rebalance.delay.ms": "0"}
    process = BrokerProcess(tmp_path_factory.mktemp("tidelog") / "data", free_port(), settings).start()
    yield process.port
    process.stop()


@pytest.fixture(params=["tidelog", "kafka"])
def port(request: pytest.FixtureRequest) -> int:
    """The broker under test: the scenario must give the same answer on both."""
    return int(request.getfixturevalue(f"{request.param}_port"))
