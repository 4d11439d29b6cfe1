"""Idempotent producers of every client (Java when its jars are present) through a proxy that drops Produce
responses, resets connections and delays answers: every acknowledged record is stored exactly once, in order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.compat.conftest import KAFKA_LIBS, kafka_available
from tests.server.conftest import BrokerProcess, free_port
from tests.server.idempotent_load import (
    AiokafkaWriter,
    ConfluentWriter,
    JavaWriter,
    KafkaPythonWriter,
    Writer,
    assert_each_acknowledged_record_once,
    check,
    read_all,
)
from tidelog.verify.proxy import PRODUCE, FaultProxy, FaultRates, RandomFaults

PARTITIONS = 3
RUN_S = 8
SEED = 20261127


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[BrokerProcess, FaultProxy]]:
    # The proxy rewrites Metadata and FindCoordinator answers to name itself: the broker keeps
    # advertising its own port, and every connection still goes through the proxy.
    broker = BrokerProcess(tmp_path / "data", free_port()).start()
    faults = RandomFaults(
        FaultRates(reset_before=0.005),
        {PRODUCE: FaultRates(reset_before=0.005, drop_response=0.03, delay=0.1, delay_max_s=0.05)},
        seed=SEED,
    )
    proxy = FaultProxy(broker.bootstrap, [faults]).start()
    yield broker, proxy
    proxy.stop()
    broker.stop()


def test_every_acknowledged_record_once_and_in_order_through_faults(
    proxied: tuple[BrokerProcess, FaultProxy], tmp_path: Path
) -> None:
    broker, proxy = proxied
    bootstrap = proxy.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("faults", PARTITIONS, 1)])["faults"].result(30)
    proxy.enabled = True
    writers: list[Writer] = [
        ConfluentWriter("confluent", bootstrap, "faults", PARTITIONS).start(),
        KafkaPythonWriter("kafkapython", bootstrap, "faults", PARTITIONS).start(),
        AiokafkaWriter("aiokafka", bootstrap, "faults", PARTITIONS).start(),
    ]
    if kafka_available():
        writers.append(
            JavaWriter(
                "java", bootstrap, "faults", PARTITIONS, libs=KAFKA_LIBS, workdir=tmp_path, max_messages=100_000
            ).start()
        )
    time.sleep(RUN_S)
    for writer in writers:
        writer.finish()
    proxy.enabled = False
    outcome = check(writers, read_all(bootstrap, "faults", PARTITIONS))
    print(
        f"\nfaults: {proxy.counters}; {outcome.summary()}; "
        + ", ".join(f"{w.name} sent {w.sent} acked {len(w.acked)}" for w in writers)
    )
    assert proxy.total("drop") > 5 and proxy.total("reset") > 0, proxy.counters
    assert proxy.counters["request:Produce"] > 0 and proxy.counters["request:Metadata"] > 0
    assert_each_acknowledged_record_once(writers, outcome)
    assert outcome.stored == outcome.acked, "nothing stored that was not acknowledged"
