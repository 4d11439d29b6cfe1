"""Differential tests: each scenario runs against tidelog and against Apache Kafka 4.x (a real
single-node KRaft broker from Maven Central's jars, see bench/kafka/) when Java and the jars are
present, and asserts the same observable result on both."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import BrokerProcess, broker, free_port  # noqa: F401  (broker: a fixture for this folder too)

ROOT = Path(__file__).parents[2]
KAFKA_LIBS = ROOT / ".cache" / "kafka" / "libs"


def kafka_available() -> bool:
    return shutil.which("java") is not None and any(KAFKA_LIBS.glob("kafka_2.13-*.jar"))


def load_reference_broker() -> object:
    spec = importlib.util.spec_from_file_location("reference_broker", ROOT / "bench" / "kafka" / "reference_broker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kafka_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if not kafka_available():
        pytest.skip("needs Java and the Kafka jars (bench/kafka/fetch.sh)")
    reference = load_reference_broker()
    port = free_port()
    process = reference.start(tmp_path_factory.mktemp("kafka"), port)  # type: ignore[attr-defined]
    yield port
    reference.stop(process)  # type: ignore[attr-defined]


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
