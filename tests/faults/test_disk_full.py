"""A full disk under a real broker, with real clients (confluent-kafka over TCP).

The broker's data directory is a small tmpfs (tests/faults/disks.py). Filled to the last byte,
every produce is answered KAFKA_STORAGE_ERROR or acknowledged (a batch that still fits in a
file's last page is really written), never acknowledged and lost; consumers keep reading;
offset commits are refused (NOT_COORDINATOR, as Kafka answers a failed offsets write) and the
committed offset stays the last one acknowledged. Once the filler is deleted, produces and
commits succeed again in the same broker process, and a restart finds every acknowledged record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.faults.brokers import FAULT_SETTINGS
from tests.faults.disks import fill, fill_inodes, small_tmpfs
from tests.server.conftest import BrokerProcess, free_port

DISK_SIZE = "8m"
PARTITIONS = 2
VALUE_BYTES = 1000
# Far more than the slack in the last pages of the files a full disk leaves (a few KiB each).
SENDS_WHILE_FULL = 400
CLIENT_TIMEOUT_S = 30
ROLL_MS = 1000


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk", DISK_SIZE) as mounted:
        yield mounted


def start_broker(data_dir: Path, **settings: str) -> BrokerProcess:
    return BrokerProcess(data_dir, free_port(), {**FAULT_SETTINGS, **settings}).start()


@pytest.fixture
def broker(disk: Path) -> Iterator[BrokerProcess]:
    process = start_broker(disk / "data")
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(CLIENT_TIMEOUT_S)


def send(bootstrap: str, topic: str, values: list[str], partitions: int = PARTITIONS) -> dict[str, KafkaError | None]:
    """Produces each value (acks=all, no retries: each refusal is seen once, no duplicates) and
    returns each one's outcome: None when acknowledged, else the error."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "retries": 0,
            "linger.ms": 5,
            "message.timeout.ms": CLIENT_TIMEOUT_S * 1000,
        }
    )
    outcomes: dict[str, KafkaError | None] = {}

    def delivered(error: KafkaError | None, message: object) -> None:
        outcomes[message.value().decode()] = error  # type: ignore[attr-defined]

    for at, value in enumerate(values):
        producer.produce(
            topic, value=value.encode().ljust(VALUE_BYTES, b"."), partition=at % partitions, on_delivery=delivered
        )
        producer.poll(0)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0, "deliveries still pending"
    return {value.rstrip("."): error for value, error in outcomes.items()}


def read_all(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> list[str]:
    """Every value in the topic, partition by partition, up to each high watermark."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), CLIENT_TIMEOUT_S)[1] for p in range(partitions)
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        positions = dict.fromkeys(range(partitions), 0)
        values: list[str] = []
        while any(positions[p] < ends[p] for p in positions):
            message = consumer.poll(CLIENT_TIMEOUT_S)
            assert message is not None, f"no record in {CLIENT_TIMEOUT_S}s at {positions} of {ends}"
            assert message.error() is None, message.error()
            if message.offset() < ends[message.partition()]:
                values.append(message.value().decode().rstrip("."))
                positions[message.partition()] = message.offset() + 1
        return values
    finally:
        consumer.close()


def split(outcomes: dict[str, KafkaError | None]) -> tuple[list[str], list[str], set[int]]:
    """(acknowledged values, refused values, the error codes of the refusals)."""
    acked = [value for value, error in outcomes.items() if error is None]
    refused = [value for value, error in outcomes.items() if error is not None]
    codes = {error.code() for error in outcomes.values() if error is not None}
    return acked, refused, codes


def test_a_full_disk_refuses_produces_keeps_serving_reads_and_resumes_when_freed(
    broker: BrokerProcess, disk: Path
) -> None:
    create_topic(broker.bootstrap, "full")
    before = send(broker.bootstrap, "full", [f"before-{i}" for i in range(200)])
    acked, refused, _ = split(before)
    assert not refused, before
    assert sorted(read_all(broker.bootstrap, "full")) == sorted(acked)  # makes __consumer_offsets too

    filler = fill(disk)
    during = send(broker.bootstrap, "full", [f"during-{i}" for i in range(SENDS_WHILE_FULL)])
    acked_during, refused_during, codes = split(during)
    assert codes == {KafkaError.KAFKA_STORAGE_ERROR}, codes
    assert len(refused_during) > SENDS_WHILE_FULL // 2, f"only {len(refused_during)} refused"
    acked += acked_during

    # Reads go on while the disk is full: every acknowledged value, and no refused one (nothing
    # of a refused append reaches the log).
    read = read_all(broker.bootstrap, "full")
    assert sorted(read) == sorted(acked)
    assert broker.process is not None and broker.process.poll() is None, "the broker died"

    filler.unlink()
    after = send(broker.bootstrap, "full", [f"after-{i}" for i in range(200)])
    acked_after, refused_after, _ = split(after)
    assert not refused_after, f"still refused after the disk was freed: {refused_after[:3]}"
    acked += acked_after
    assert sorted(read_all(broker.bootstrap, "full")) == sorted(acked)

    assert broker.stop() == 0
    assert "closed cleanly" in broker.log_text()
    broker.start()
    assert sorted(read_all(broker.bootstrap, "full")) == sorted(acked)


def commit(consumer: Consumer, topic: str, offset: int) -> KafkaError | None:
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    except KafkaException as refused:
        error: KafkaError = refused.args[0]
        return error
    return None


def committed(consumer: Consumer, topic: str) -> int:
    [position] = consumer.committed([TopicPartition(topic, 0)], CLIENT_TIMEOUT_S)
    return int(position.offset)


def test_offset_commits_on_a_full_disk_are_refused_and_resume_when_freed(broker: BrokerProcess, disk: Path) -> None:
    create_topic(broker.bootstrap, "offsets", partitions=1)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "committer", "enable.auto.commit": False})
    try:
        assert commit(consumer, "offsets", 1) is None  # __consumer_offsets exists, the group loaded
        filler = fill(disk)
        # Each commit writes a record of the same size: once one does not fit, none does. The
        # first few may still fit in the last page of the offsets segment.
        last_acknowledged, refusal = 1, None
        for offset in range(2, 400):
            refusal = commit(consumer, "offsets", offset)
            if refusal is not None:
                break
            last_acknowledged = offset
        assert refusal is not None, "every commit was acknowledged on a full disk"
        assert refusal.code() in (KafkaError.NOT_COORDINATOR, KafkaError.KAFKA_STORAGE_ERROR), refusal
        assert committed(consumer, "offsets") == last_acknowledged

        filler.unlink()
        assert commit(consumer, "offsets", 1000) is None
        assert committed(consumer, "offsets") == 1000
    finally:
        consumer.close()
    assert broker.process is not None and broker.process.poll() is None, "the broker died"


def test_a_roll_that_runs_out_of_inodes_is_retried_once_they_are_back(tmp_path: Path) -> None:
    """No inode left when the active segment rolls: the new segment's files cannot all be made.
    The produce is refused; those made go again, so once inodes are free the roll succeeds
    (it would fail for good on a leftover `.log` otherwise)."""
    with small_tmpfs(tmp_path / "disk", "32m", inodes=64) as disk:
        # Every append after a second rolls the segment (segment.ms counts from its first batch).
        broker = start_broker(disk / "data", **{"log.roll.ms": str(ROLL_MS)})
        try:
            create_topic(broker.bootstrap, "rolls", partitions=1)
            acked, refused, _ = split(send(broker.bootstrap, "rolls", [f"first-{i}" for i in range(10)], 1))
            assert not refused
            for leave in (0, 1, 2):  # no inode for the .log, then none for the .index, the .timeindex
                time.sleep(ROLL_MS / 1000 + 0.2)
                fillers = fill_inodes(disk, leave=leave)
                outcomes = send(broker.bootstrap, "rolls", [f"full{leave}-{i}" for i in range(10)], 1)
                acked_full, refused_full, codes = split(outcomes)
                assert codes == {KafkaError.KAFKA_STORAGE_ERROR}, codes
                assert not acked_full, f"a roll without its files let an append through (leave {leave})"
                for path in fillers:
                    path.unlink()
            freed = send(broker.bootstrap, "rolls", [f"freed-{i}" for i in range(10)], 1)
            acked_freed, refused_freed, _ = split(freed)
            assert not refused_freed, f"still refused with inodes free: {freed[refused_freed[0]]}"
            acked += acked_freed
            assert read_all(broker.bootstrap, "rolls", 1) == acked
            assert broker.stop() == 0
        finally:
            if broker.process is not None and broker.process.poll() is None:
                broker.kill()


def test_a_topic_created_on_a_full_disk_is_refused_whole_and_can_be_created_once_freed(
    broker: BrokerProcess, disk: Path
) -> None:
    filler = fill(disk)
    with pytest.raises(KafkaException) as refused:
        create_topic(broker.bootstrap, "late", partitions=3)
    assert refused.value.args[0].code() == KafkaError.KAFKA_STORAGE_ERROR, refused.value
    assert not (disk / "data" / "late-0").exists()
    filler.unlink()
    create_topic(broker.bootstrap, "late", partitions=3)  # not "already exists": nothing was left
    acked, refused_values, _ = split(send(broker.bootstrap, "late", [f"v-{i}" for i in range(30)], 3))
    assert not refused_values
    assert sorted(read_all(broker.bootstrap, "late", 3)) == sorted(acked)


def test_find_coordinator_before_the_offsets_topic_exists_on_a_full_disk(broker: BrokerProcess, disk: Path) -> None:
    """__consumer_offsets is made on the first FindCoordinator; on a full disk it cannot be:
    COORDINATOR_NOT_AVAILABLE (clients retry), the connection stays open, and once space is
    freed the same connection finds the coordinator."""
    from kio.schema.errors import ErrorCode
    from kio.schema.find_coordinator.v3.request import FindCoordinatorRequest

    from tests.server.wire_client import WireClient

    filler = fill(disk)
    client = WireClient(broker.port)
    try:
        refused = client.request(10, 3, FindCoordinatorRequest(key="g", key_type=0))
        assert refused.error_code == ErrorCode.coordinator_not_available, refused
        filler.unlink()
        found = client.request(10, 3, FindCoordinatorRequest(key="g", key_type=0), correlation_id=2)
        assert found.error_code == ErrorCode.none and found.port == broker.port, found
    finally:
        client.close()
    assert "internal error" not in broker.log_text()
