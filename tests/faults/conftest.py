"""Fixtures of the fault tests: the broker under test (see brokers.py), chosen by --fault-broker.
Without the option a test runs on tidelog, and a test marked `kafka_side` on Apache Kafka 4.4 too:
the Kafka side that CI runs, so a failure seen on both is known to be the test's or Kafka's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.brokers import FaultBroker, running_broker


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fault_broker" in metafunc.fixturenames:
        choice = metafunc.config.getoption("--fault-broker")
        if choice is None:
            choice = "both" if metafunc.definition.get_closest_marker("kafka_side") else "tidelog"
        names = ["tidelog", "kafka"] if choice == "both" else [choice]
        metafunc.parametrize("fault_broker", names, indirect=True)
    if "both_brokers" in metafunc.fixturenames:
        metafunc.parametrize("both_brokers", ["tidelog", "kafka"], indirect=True)


@pytest.fixture
def fault_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaultBroker]:
    """The broker the run asked for (--fault-broker), on a data directory of its own."""
    yield from running_broker(request.param, tmp_path / request.param)


@pytest.fixture
def both_brokers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaultBroker]:
    """tidelog and Apache Kafka 4.4 in turn, whatever --fault-broker says (skipped without Java)."""
    yield from running_broker(request.param, tmp_path / request.param)
