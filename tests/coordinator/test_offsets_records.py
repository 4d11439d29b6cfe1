"""`__consumer_offsets` records: Kafka's formats, Kafka's partitioning, and the shard's promise
that loading a log rebuilds exactly the state its live writes produced."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core_harness import running_broker, until_loaded
from tidelog.coordinator.group import records
from tidelog.coordinator.group.records import GroupKey, OffsetAndMetadata, OffsetKey, StoredGroup, StoredMember
from tidelog.coordinator.group.shard import GroupShard
from tidelog.coordinator.runtime import CoordinatorResult, KeyValue
from tidelog.core.broker import Broker

LIBS = Path(__file__).parents[2] / ".cache" / "kafka" / "libs"
DUMPER = "org.apache.kafka.tools.DumpLogSegments"
TOPIC = "__consumer_offsets"

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
int32s = st.integers(-(2**31), 2**31 - 1)
int64s = st.integers(-(2**63), 2**63 - 1)
offsets = st.builds(OffsetAndMetadata, int64s, int32s, names, int64s, st.just(-1) | st.integers(0, 2**62))
members = st.builds(
    StoredMember, names, st.none() | names, names, names, int32s, int32s, st.binary(max_size=40), st.binary(max_size=40)
)
stored_groups = st.builds(
    StoredGroup, names, int32s, st.none() | names, st.none() | names, int64s, st.tuples(members, members) | st.just(())
)


@given(names, names, int32s, offsets)
def test_offset_commit_records_round_trip(group: str, topic: str, partition: int, value: OffsetAndMetadata) -> None:
    assert records.parse_key(records.offset_key(OffsetKey(group, topic, partition))) == OffsetKey(
        group, topic, partition
    )
    parsed = records.parse_offset_value(records.offset_value(value))
    if value.expire_timestamp_ms == -1:
        assert parsed == value
    else:  # value v1 carries an expire time and no leader epoch, as in Kafka
        assert parsed == OffsetAndMetadata(
            value.offset, -1, value.metadata, value.commit_timestamp_ms, value.expire_timestamp_ms
        )


@given(names, stored_groups)
def test_group_metadata_records_round_trip(group: str, value: StoredGroup) -> None:
    assert records.parse_key(records.group_key(GroupKey(group))) == GroupKey(group)
    assert records.parse_group_value(records.group_value(value)) == value


@given(st.binary(max_size=64))
def test_garbage_values_raise_a_record_error_only(data: bytes) -> None:
    for parse in (records.parse_offset_value, records.parse_group_value, records.parse_key):
        try:
            parse(data)
        except records.CoordinatorRecordError:
            pass


def test_partitioning_matches_java_string_hash_code() -> None:
    # Values of Java's String.hashCode(); "polygenelubricants" is Integer.MIN_VALUE, which
    # Kafka's Utils.abs maps to 0.
    assert records.java_string_hash("hello") == 99162322
    assert records.java_string_hash("") == 0
    assert records.java_string_hash("polygenelubricants") == -(2**31)
    assert records.partition_for("polygenelubricants", 50) == 0
    assert records.java_string_hash("héllo😀") == 291564465  # computed with Java 17 (a surrogate pair)
    assert records.partition_for("console-consumer-1", 50) == abs(records.java_string_hash("console-consumer-1")) % 50


def state_of(shard: GroupShard) -> dict[str, object]:
    """The durable state: committed offsets and the stored generation of every group."""
    return {name: (dict(group.offsets), group.stored) for name, group in shard.groups.items()}


async def write(broker: Broker, key_values: list[KeyValue]) -> None:
    """Writes records into `__consumer_offsets-0` through the coordinator runtime."""
    broker.groups.ensure_offsets_topic()
    await broker.groups.runtime.write(0, lambda shard: CoordinatorResult(key_values, None))


operations = st.lists(
    st.tuples(
        st.sampled_from(["commit", "tombstone", "group", "delete-group"]),
        st.sampled_from(["g1", "g2", "g3"]),
        st.integers(0, 3),
        st.integers(0, 10**6),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=25, deadline=None)
@given(operations)
def test_a_reload_rebuilds_what_live_writes_produced(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, str, int, int]]
) -> None:
    data_dir = tmp_path_factory.mktemp("offsets")

    async def write_all() -> dict[str, object]:
        async with running_broker(data_dir, offsets_topic_num_partitions=1) as broker:
            for kind, group, partition, value in ops:
                await write(broker, [record_for(kind, group, partition, value)])
            return state_of(broker.groups.runtime.shard(0))

    async def reload() -> dict[str, object]:
        async with running_broker(data_dir, offsets_topic_num_partitions=1) as broker:
            await until_loaded(broker)
            return state_of(broker.groups.runtime.shard(0))

    live = asyncio.run(write_all())
    assert asyncio.run(reload()) == live


def record_for(kind: str, group: str, partition: int, value: int) -> tuple[bytes, bytes | None]:
    if kind == "commit":
        return records.offset_key(OffsetKey(group, "t", partition)), records.offset_value(
            OffsetAndMetadata(value, -1, "m", 1, -1)
        )
    if kind == "tombstone":
        return records.offset_key(OffsetKey(group, "t", partition)), None
    if kind == "group":
        member = StoredMember(f"m-{value}", None, "c", "/127.0.0.1", 1000, 1000, b"s", b"a")
        return records.group_key(GroupKey(group)), records.group_value(
            StoredGroup("consumer", value, "range", f"m-{value}", 1, (member,))
        )
    return records.group_key(GroupKey(group)), None


@pytest.mark.skipif(
    shutil.which("java") is None or not any(LIBS.glob("kafka_2.13-*.jar")),
    reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)",
)
def test_kafka_decodes_our_offsets_records(tmp_path: Path) -> None:
    async def write_records() -> None:
        async with running_broker(tmp_path, offsets_topic_num_partitions=1) as broker:
            await write(broker, [record_for("commit", "dump-group", 2, 4242)])
            await write(broker, [record_for("group", "dump-group", 0, 7)])
            key = records.offset_key(OffsetKey("dump-group", "t", 3))
            await write(broker, [(key, records.offset_value(OffsetAndMetadata(9, 5, "", 2, 3)))])
            await write(broker, [record_for("tombstone", "dump-group", 2, 0)])

    asyncio.run(write_records())
    segment = next((tmp_path / f"{TOPIC}-0").glob("*.log"))
    result = subprocess.run(
        ["java", "-cp", f"{LIBS}/*", DUMPER, "--offsets-decoder", "--files", str(segment)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "key:" in line]
    assert len(lines) == 4, result.stdout
    assert lines[0].endswith(
        'key: {"type":"1","data":{"group":"dump-group","topic":"t","partition":2}} '
        'payload: {"version":"3","data":{"offset":4242,"leaderEpoch":-1,"metadata":"m","commitTimestamp":1}}'
    )
    assert '"protocolType":"consumer"' in lines[1] and '"generation":7' in lines[1] and '"memberId":"m-7"' in lines[1]
    assert '"offset":9' in lines[2] and '"expireTimestamp":3' in lines[2]
    assert lines[3].endswith(
        'key: {"type":"1","data":{"group":"dump-group","topic":"t","partition":2}} payload: <DELETE>'
    )
    assert "Unknown" not in result.stdout and "error" not in result.stdout.lower()
