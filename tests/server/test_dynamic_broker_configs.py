"""Dynamic broker configs in a running tidelog: a change reaches the open logs whose topics do not
set the key themselves, the cleaner and the listener at once, and is still in effect after a
restart; a stored value this version refuses is left out at start. Real clients (confluent-kafka)
and a real broker process. What Kafka answers to the same requests: tests/compat/test_broker_configs.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from kio.schema.errors import ErrorCode

from tests.server.config_wire import BROKER, DELETE, SET, alter, alter_request, describe
from tests.server.conftest import BrokerProcess, free_port, wait_until
from tests.server.wire_client import WireClient

ADMIN_TIMEOUT_S = 20
DELIVERY_TIMEOUT_S = 20
VALUE = b"v" * 5000
CLEANED = re.compile(r"cleaned compacted-0: \d+ segment\(s\)")


def set_broker_configs(bootstrap: str, changes: dict[str, str | None]) -> None:
    """IncrementalAlterConfigs for broker 1 through confluent-kafka's admin client (None: delete)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entries = [
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET if v is not None else AlterConfigOpType.DELETE)
        for k, v in changes.items()
    ]
    resource = ConfigResource("broker", "1", incremental_configs=entries)
    admin.incremental_alter_configs([resource])[resource].result(ADMIN_TIMEOUT_S)


def produce_one(bootstrap: str, topic: str, value: bytes) -> KafkaError | None:
    """Sends one record; the delivery error, or None once it is acknowledged."""
    outcome: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 1 << 20, "retries": 0})
    producer.produce(topic, value, on_delivery=lambda error, _: outcome.append(error))
    producer.flush(DELIVERY_TIMEOUT_S)
    assert len(outcome) == 1
    return outcome[0]


def create(bootstrap: str, topic: str, configs: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=configs or {})])[topic].result(ADMIN_TIMEOUT_S)


def test_message_max_bytes_reaches_topics_without_their_own_and_outlives_a_restart(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", free_port()).start()
    try:
        create(broker.bootstrap, "follows")
        create(broker.bootstrap, "own", {"max.message.bytes": "100000"})
        assert produce_one(broker.bootstrap, "follows", VALUE) is None
        set_broker_configs(broker.bootstrap, {"message.max.bytes": "2000"})
        error = produce_one(broker.bootstrap, "follows", VALUE)
        assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
        assert produce_one(broker.bootstrap, "own", VALUE) is None
    finally:
        broker.stop()
    broker.start()
    try:
        error = produce_one(broker.bootstrap, "follows", VALUE)
        assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
        value, source, read_only, _ = describe(broker.port, BROKER, "1", ("message.max.bytes",))["message.max.bytes"]
        assert (value, source, read_only) == ("2000", 2, False)
        set_broker_configs(broker.bootstrap, {"message.max.bytes": None})
        assert produce_one(broker.bootstrap, "follows", VALUE) is None
    finally:
        broker.stop()
    assert json.loads((tmp_path / "data" / "broker-configs.json").read_text()) == {"broker": {}, "cluster_default": {}}


def segment_count(data_dir: Path, topic: str) -> int:
    return len(list((data_dir / f"{topic}-0").glob("*.log")))


def log_start(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        low, _ = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=DELIVERY_TIMEOUT_S)
        return int(low)
    finally:
        consumer.close()


def test_segment_and_retention_defaults_change_the_open_logs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    broker = BrokerProcess(data_dir, free_port(), {"log.retention.check.interval.ms": "200"}).start()
    try:
        create(broker.bootstrap, "follows")
        create(broker.bootstrap, "keeps", {"retention.ms": "-1"})
        # The cluster-wide default, as kafka-configs --entity-default sets it.
        assert alter(broker.port, "", [("log.segment.bytes", "1048576", SET)]) == (ErrorCode.none, None)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        for topic in ("follows", "keeps"):
            for _ in range(3 * 1024):
                producer.produce(topic, b"r" * 1000)
        assert producer.flush(DELIVERY_TIMEOUT_S) == 0
        # Both topics roll at 1 MiB now (neither sets segment.bytes), not at the 1 GiB default.
        assert segment_count(data_dir, "follows") >= 3 and segment_count(data_dir, "keeps") >= 3
        assert log_start(broker.bootstrap, "follows") == 0

        assert alter(broker.port, "1", [("log.retention.ms", "1", SET)]) == (ErrorCode.none, None)
        wait_until(lambda: log_start(broker.bootstrap, "follows") > 0, timeout_s=20)
        assert segment_count(data_dir, "follows") == 1  # only the active segment is left
        assert log_start(broker.bootstrap, "keeps") == 0 and segment_count(data_dir, "keeps") >= 3
    finally:
        broker.stop()


def test_max_connections_applies_to_the_next_connection(broker: BrokerProcess) -> None:
    first = WireClient(broker.port)
    assert alter(broker.port, "1", [("max.connections", "1", SET)]) == (ErrorCode.none, None)
    # `first` is the one connection allowed; the broker closes the next at once.
    second = WireClient(broker.port)
    assert second.closed_by_broker()
    second.close()
    assert "max.connections 1 reached" in broker.log_text()
    # Deleted again through the connection that was let in.
    answer = first.request(44, 1, alter_request("1", [("max.connections", None, DELETE)]))
    assert answer.responses[0].error_code == ErrorCode.none
    first.close()
    assert describe(broker.port, BROKER, "1", ("max.connections",))["max.connections"][:2] == ("10000", 5)


def test_a_shorter_cleaner_backoff_wakes_the_cleaner(tmp_path: Path) -> None:
    # The cleaner looks once at the start, then sleeps an hour.
    broker = BrokerProcess(tmp_path / "data", free_port(), {"log.cleaner.backoff.ms": "3600000"}).start()
    try:
        compacted = {"cleanup.policy": "compact", "internal.segment.bytes": "4096", "min.cleanable.dirty.ratio": "0.01"}
        create(broker.bootstrap, "compacted", compacted)
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(400):  # batches of 10 records: segments of 4 KiB roll
            producer.produce("compacted", b"x" * 100, key=str(i % 10).encode())
            if i % 10 == 9:
                assert producer.flush(DELIVERY_TIMEOUT_S) == 0
        assert CLEANED.search(broker.log_text()) is None
        set_broker_configs(
            broker.bootstrap, {"log.cleaner.backoff.ms": "100", "log.cleaner.dedupe.buffer.size": "2097152"}
        )
        wait_until(lambda: CLEANED.search(broker.log_text()) is not None, timeout_s=20)
        assert "log cleaner restarted: dedupe buffer 2097152 bytes" in broker.log_text()
    finally:
        broker.stop()


def test_static_values_yield_to_dynamic_ones_and_a_refused_stored_value_is_left_out(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    stored = {"cluster_default": {"log.retention.ms": "1234"}, "broker": {"message.max.bytes": "lots"}}
    (data_dir / "broker-configs.json").write_text(json.dumps(stored))
    broker = BrokerProcess(data_dir, free_port(), {"log.cleaner.delete.retention.ms": "1000"}).start()
    try:
        assert "ignoring message.max.bytes=lots: Invalid value lots for configuration message.max.bytes" in (
            broker.log_text()
        )
        keys = ("log.retention.ms", "message.max.bytes", "log.cleaner.delete.retention.ms")
        shown = {k: v[:2] for k, v in describe(broker.port, BROKER, "1", keys).items()}
        assert shown == {
            "log.retention.ms": ("1234", 3),
            "message.max.bytes": ("1048588", 5),
            "log.cleaner.delete.retention.ms": ("1000", 4),
        }
        assert alter(broker.port, "", [("log.cleaner.delete.retention.ms", "2000", SET)]) == (ErrorCode.none, None)
        assert describe(broker.port, BROKER, "1", keys)["log.cleaner.delete.retention.ms"][:2] == ("2000", 3)
        assert alter(broker.port, "", [("log.cleaner.delete.retention.ms", None, DELETE)]) == (ErrorCode.none, None)
        assert describe(broker.port, BROKER, "1", keys)["log.cleaner.delete.retention.ms"][:2] == ("1000", 4)
    finally:
        broker.stop()
