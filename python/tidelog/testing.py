"""pytest fixtures: a real tidelog broker in the test process, for testing Kafka code.

Installed as a pytest plugin (entry point `tidelog`), so with tidelog installed a test just asks:

    def test_orders(tidelog_bootstrap):
        producer = confluent_kafka.Producer({"bootstrap.servers": tidelog_bootstrap})
        ...

- `tidelog_server`: a broker on a fresh data directory for each test (an `EmbeddedServer`:
  `.bootstrap`, `.path`), on loopback, durable and exact (fsync before ack, Kafka's rules);
- `tidelog_bootstrap`: its address, for `bootstrap.servers`;
- `tidelog_session_server`: one broker for the whole session (faster, state shared);
- `tidelog_config`: the broker settings both use (Kafka's keys). The default turns off the
  initial rebalance delay of new consumer groups (3 s in Kafka), as Kafka's own test harnesses
  do; override the fixture to change settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tidelog.embedded.server import EmbeddedServer

TEST_SETTINGS = {"group.initial.rebalance.delay.ms": "0"}


@pytest.fixture(scope="session")
def tidelog_config() -> dict[str, str]:
    """Broker settings (Kafka's keys) of the fixtures' brokers; override to change them."""
    return dict(TEST_SETTINGS)


@pytest.fixture
def tidelog_server(
    tmp_path_factory: pytest.TempPathFactory, tidelog_config: dict[str, str]
) -> Iterator[EmbeddedServer]:
    """A tidelog broker on loopback, on a fresh data directory, for one test."""
    from tidelog.embedded.server import serve

    with serve(tmp_path_factory.mktemp("tidelog"), config=tidelog_config) as server:
        yield server


@pytest.fixture
def tidelog_bootstrap(tidelog_server: EmbeddedServer) -> str:
    """`bootstrap.servers` for the test's broker (host:port)."""
    return tidelog_server.bootstrap


@pytest.fixture(scope="session")
def tidelog_session_server(
    tmp_path_factory: pytest.TempPathFactory, tidelog_config: dict[str, str]
) -> Iterator[EmbeddedServer]:
    """One tidelog broker shared by every test of the session."""
    from tidelog.embedded.server import serve

    with serve(tmp_path_factory.mktemp("tidelog-session"), config=tidelog_config) as server:
        yield server
