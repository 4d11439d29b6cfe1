"""Shared helpers: batches as a producer builds them, and logs in temp directories."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidelog.config import TopicConfig
from tidelog.protocol.record_batch import OFFSET_OF, build_batch
from tidelog.storage import PartitionLog, log_config_for


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_batch(count: int = 3, value_bytes: int = 100, timestamp_ms: int | None = None, tag: int = 0) -> bytes:
    """`count` records whose values carry `tag`, so batches can be told apart when read back."""
    base = now_ms() if timestamp_ms is None else timestamp_ms
    value = tag.to_bytes(8, "big") + bytes(max(0, value_bytes - 8))
    return build_batch(
        [(base + i, f"key-{tag}-{i}".encode(), value, [("tag", str(tag).encode())]) for i in range(count)]
    )


def with_attribute_bits(batch: bytes, bits: int) -> bytes:
    """`batch` with `bits` set in its attributes (the CRC is left as it was)."""
    at = OFFSET_OF["attributes"]
    (attributes,) = struct.unpack_from(">h", batch, at)
    return batch[:at] + struct.pack(">h", attributes | bits) + batch[at + 2 :]


def open_log(directory: Path, **overrides: object) -> PartitionLog:
    log, _ = PartitionLog.open(directory, log_config_for(TopicConfig().with_overrides(overrides)))
    return log


def segment_batches(segment: Path) -> list[tuple[int, int, int, int]]:
    """(position, size, base offset, last offset) of each batch in a segment file, as stored."""
    data = segment.read_bytes()
    found, position = [], 0
    while position < len(data):
        base, length = struct.unpack_from(">qi", data, position)
        (last_delta,) = struct.unpack_from(">i", data, position + 23)
        found.append((position, length + 12, base, base + last_delta))
        position += length + 12
    return found


def read_everything(log: PartitionLog, upper_bound: int | None = None) -> bytes:
    """Every batch from the log start offset to the log end offset, as stored."""
    out = bytearray()
    offset = log.log_start_offset
    bound = log.log_end_offset if upper_bound is None else upper_bound
    while (piece := log.read(offset, 1 << 20, bound)) is not None:
        out += piece.read()
        offset = piece.last_offset + 1
    return bytes(out)


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "topic-0"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fault-broker",
        choices=("tidelog", "kafka", "both"),
        default=None,
        help=(
            "the broker the fault tests (tests/faults) run against: tidelog, Apache Kafka 4.4, or both; "
            "unset: tidelog, and both for the tests marked kafka_side"
        ),
    )
