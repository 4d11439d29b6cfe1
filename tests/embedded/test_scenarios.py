"""The produce/fetch/group scenarios, each run twice: through a Kafka client over TCP (to the
in-process server) and through the native API. One body per scenario, two drivers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tidelog
from tests.embedded.drivers import Driver, KafkaDriver, NativeDriver
from tests.server.scenario import records_for
from tidelog.embedded import serve


@pytest.fixture(params=["kafka", "native"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    if request.param == "native":
        with tidelog.open(tmp_path / "data") as log:
            yield NativeDriver(log)
    else:
        with serve(tmp_path / "data", config={"group.initial.rebalance.delay.ms": "0"}) as server:
            yield KafkaDriver(server.bootstrap)


def test_records_round_trip_with_keys_values_headers_and_timestamps(driver: Driver) -> None:
    driver.create_topic("orders", 1)
    sent = records_for("none")
    assert driver.produce("orders", 0, sent) == list(range(len(sent)))
    got = driver.consume("orders", 0, 0, len(sent))
    assert [g.offset for g in got] == list(range(len(sent)))
    assert [(g.key, g.value, g.headers, g.timestamp_ms) for g in got] == [
        (s.key, s.value, s.headers, s.timestamp_ms) for s in sent
    ]


def test_a_read_from_inside_a_batch_starts_at_that_offset(driver: Driver) -> None:
    driver.create_topic("mid", 1)
    sent = records_for("none")[:50]
    driver.produce("mid", 0, sent)
    got = driver.consume("mid", 0, 17, 33)
    assert [g.offset for g in got] == list(range(17, 50))
    assert got[0].value == sent[17].value


def test_partitions_are_separate_logs(driver: Driver) -> None:
    driver.create_topic("spread", 3)
    sent = records_for("none")[:30]
    for partition in range(3):
        assert driver.produce("spread", partition, sent[partition::3]) == list(range(10))
    for partition in range(3):
        assert [g.value for g in driver.consume("spread", partition, 0, 10)] == [s.value for s in sent[partition::3]]


def test_committed_offsets_round_trip(driver: Driver) -> None:
    driver.create_topic("events", 2)
    assert driver.committed("readers", [("events", 0), ("events", 1)]) == {}
    driver.commit("readers", {("events", 0): 7, ("events", 1): 0})
    assert driver.committed("readers", [("events", 0), ("events", 1)]) == {("events", 0): 7, ("events", 1): 0}
    driver.commit("readers", {("events", 0): 9})
    assert driver.committed("readers", [("events", 0)]) == {("events", 0): 9}


def test_a_retried_idempotent_batch_is_stored_once(driver: Driver) -> None:
    driver.create_topic("once", 1)
    sent = records_for("none")[:5]
    driver.produce("once", 0, sent[:2])
    first, again = driver.idempotent_retried("once", 0, sent)
    assert first == again == 2
    got = driver.consume("once", 0, 0, 7)
    assert [g.offset for g in got] == list(range(7))
    assert driver.consume("once", 0, 7, 1, timeout_s=1.0) == [], "nothing after the batch"
