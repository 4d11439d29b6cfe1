"""Apache Kafka 4.4's own tools on a compacted and cleaned topic, on tidelog and on Kafka: the
console consumer prints exactly what compaction kept (the last value of each key below the
active segment, and all of the active segment), and kafka-dump-log reads the cleaned segment
files in the broker's data directory without complaint and lists the same batches and records
for both brokers.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

import pytest

from tests.compat.conftest import KAFKA_LIBS, CompactingBroker, kafka_available
from tests.compat.test_compaction_differential import (
    COMPACTED,
    SHORT_JVM,
    TOOL_TIMEOUT_S,
    Record,
    cleaned_view,
    create_topic,
    kafka_tool,
    produce_overwrites,
)

pytestmark = pytest.mark.skipif(not kafka_available(), reason="needs Java and the Kafka jars (bench/kafka/fetch.sh)")

DUMPER = "org.apache.kafka.tools.DumpLogSegments"
FIELD = re.compile(r"(\w+): (\S+)")
GAP = re.compile(r"^  (-?\d+) is followed by (\d+)$")
# Batch fields that depend on the run (timestamps, the CRC over them, where a cleaned segment
# put the batch). The leader epoch is compared: both brokers stamp theirs, 0, in every batch.
RUN_FIELDS = {"position", "CreateTime", "crc"}

Cleaned = tuple[CompactingBroker, str, list[Record]]
_cleaned: dict[str, Cleaned] = {}


def cleaned_topic(broker: CompactingBroker) -> Cleaned:
    """One topic per broker filled with the overwrites of the differential scenario and cleaned
    (made once per session, for every test of this module)."""
    if broker.name not in _cleaned:
        topic = create_topic(broker, **COMPACTED)
        records, expected = produce_overwrites(broker, topic)
        assert cleaned_view(broker, topic, expected, len(records)) == expected
        _cleaned[broker.name] = (broker, topic, expected)
    return _cleaned[broker.name]


def text(data: bytes | None) -> str:
    assert data is not None
    return data.decode()


@pytest.fixture
def cleaned(compacting: CompactingBroker) -> Cleaned:
    return cleaned_topic(compacting)


def test_the_console_consumer_prints_what_compaction_kept(cleaned: Cleaned) -> None:
    broker, topic, expected = cleaned
    out = kafka_tool(
        "consumer.ConsoleConsumer", "--bootstrap-server", broker.bootstrap, "--topic", topic, "--partition", "0",
        "--offset", "earliest", "--max-messages", str(len(expected)), "--timeout-ms", "20000",
        "--formatter-property", "print.offset=true", "--formatter-property", "print.key=true",
    )  # fmt: skip
    # As many messages as kept, and the last offset among them: no record beyond the expected.
    assert out.splitlines() == [f"Offset:{o}\t{text(k)}\t{text(v)}" for o, k, v in expected]


def dump(partition_dir: Path) -> tuple[list[dict[str, str]], list[dict[str, str]], list[tuple[int, int]]]:
    """kafka-dump-log --deep-iteration --print-data-log over every segment of the partition:
    its batch lines and record lines as fields, and the gaps it reports (each file's first
    offset is reported as following -1). Anything else on stderr fails."""
    files = sorted(str(p) for p in partition_dir.glob("*.log"))
    assert files, f"no segment in {partition_dir}"
    options = ["--deep-iteration", "--print-data-log", "--files", ",".join(files)]
    command = ["java", *SHORT_JVM, "-cp", f"{KAFKA_LIBS}/*", DUMPER, *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    batches, records = [], []
    for line in result.stdout.splitlines():
        if line.startswith("baseOffset:"):
            batches.append(dict(FIELD.findall(line)))
        elif line.startswith("| offset:"):
            records.append(dict(FIELD.findall(line)))
        else:
            assert line.startswith(("Dumping ", "Log starting offset: ")), line
    gaps = []
    for line in result.stderr.splitlines():
        if line.startswith("Non-consecutive offsets in "):
            continue
        match = GAP.match(line)
        assert match is not None, result.stderr
        gaps.append((int(match[1]), int(match[2])))
    return batches, records, gaps


def test_kafka_dump_log_reads_the_cleaned_segments(cleaned: Cleaned) -> None:
    broker, topic, expected = cleaned
    batches, records, gaps = dump(broker.partition_dir(topic))
    assert [(int(r["offset"]), r["key"].encode(), r["payload"].encode()) for r in records] == expected
    # One record a batch, as produced; every batch valid.
    assert [(int(b["baseOffset"]), int(b["lastOffset"]), b["count"]) for b in batches] == [
        (o, o, "1") for o, _, _ in expected
    ]
    assert {b["isvalid"] for b in batches} == {"true"}
    # The tool names each gap compaction left inside a file, and each file's first offset.
    kept = [o for o, _, _ in expected]
    holes = {(a, b) for a, b in itertools.pairwise(kept) if b > a + 1}
    assert {(a, b) for a, b in gaps if a >= 0} <= holes, gaps
    assert {b for a, b in gaps if a == -1} <= set(kept), gaps


def test_kafka_dump_log_lists_the_same_for_both_brokers(
    tidelog_compaction: CompactingBroker, kafka_compaction: CompactingBroker
) -> None:
    listings = {}
    for broker in (tidelog_compaction, kafka_compaction):
        _, topic, _ = cleaned_topic(broker)
        batches, records, _ = dump(broker.partition_dir(topic))
        listings[broker.name] = (
            [{k: v for k, v in b.items() if k not in RUN_FIELDS} for b in batches],
            [{k: v for k, v in r.items() if k != "CreateTime"} for r in records],
        )
    assert listings["tidelog"] == listings["kafka"]
