"""Reading a partition in process: records as Python objects, or as columns.

Reads run in the caller's thread (the native log is thread-safe), up to the high watermark
(read_uncommitted) or the last stable offset (read_committed), exactly as a fetch would. Every
batch's CRC-32C is checked, as Kafka's consumers do; compressed batches are decompressed by the
engine; control batches (transaction markers) are stepped over. Records are decoded in the
compiled `_records` module (Record objects, or columns written straight into arrays).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import crc32c
from kio.schema.errors import ErrorCode

from tidelog.core.errors import error_code_for
from tidelog.core.partition import Partition
from tidelog.core.types import IsolationLevel
from tidelog.errors import KafkaError
from tidelog.protocol.record_batch import (
    CRC_START,
    HEADER_BYTES,
    ColumnBuilder,
    Record,
    decode_into,
    iter_batches,
)
from tidelog.storage import StorageError, decompress

if TYPE_CHECKING:
    import numpy as np


def upper_bound(partition: Partition, isolation: IsolationLevel) -> int:
    if isolation == IsolationLevel.READ_COMMITTED:
        return partition.last_stable_offset
    return partition.high_watermark


def _chunks(partition: Partition, offset: int, max_bytes: int, bound: int) -> Any:
    """Whole batches from `offset` up to `bound`, `max_bytes` in all (at least one batch).
    An offset outside the log is OFFSET_OUT_OF_RANGE, as a fetch answers it."""
    start, end = partition.log_start_offset, partition.log_end_offset
    if not start <= offset <= end:
        message = f"offset {offset} is outside [{start}, {end}] of {partition.topic_partition}"
        raise KafkaError.of(ErrorCode.offset_out_of_range, message)
    budget, first = max_bytes, True
    position = offset
    while position < bound and (budget > 0 or first):
        try:
            piece = partition.read(position, max(budget, 0), bound, min_one_batch=first)
        except StorageError as error:
            raise KafkaError.of(error_code_for(error), str(error)) from None
        if piece is None:
            return
        data = piece.read()
        budget -= len(data)
        first = False
        for header, batch in iter_batches(data):
            if crc32c.crc32c(batch[CRC_START:]) != header.crc:
                message = f"{partition.topic_partition}: batch at offset {header.base_offset} fails its CRC-32C"
                raise KafkaError.of(ErrorCode.corrupt_message, message)
            yield header, batch
            position = header.last_offset + 1


def _payload(header: Any, batch: memoryview) -> bytes | memoryview:
    records = batch[HEADER_BYTES:]
    if not header.compression:
        return records
    try:
        return decompress(header.compression, records)
    except StorageError as error:
        raise KafkaError.of(error_code_for(error), str(error)) from None


def read_records(
    partition: Partition, offset: int, max_records: int, max_bytes: int, isolation: IsolationLevel
) -> tuple[list[Record], int]:
    """Records from `offset` (at most `max_records`, about `max_bytes` of batches), and the offset
    to read from next."""
    topic, index = partition.topic_partition
    bound = upper_bound(partition, isolation)
    out: list[Record] = []
    next_offset = offset
    for header, batch in _chunks(partition, offset, max_bytes, bound):
        if header.is_control:
            next_offset = header.last_offset + 1
            continue
        append_time = header.max_timestamp if header.is_log_append_time else -1
        left = max_records - len(out)
        decode_into(
            out, _payload(header, batch), header.base_offset, header.base_timestamp, header.record_count,
            append_time, topic, index, offset, left,
        )  # fmt: skip
        if len(out) >= max_records:
            next_offset = out[-1].offset + 1
            break
        next_offset = header.last_offset + 1
    return out, max(next_offset, offset)


@dataclass(frozen=True)
class Columns:
    """A range of records as columns (numpy arrays): `offsets` and `timestamps` (int64), and for
    keys and values their start in `data` (int64) and length (int32, -1 for null). `data` is one
    contiguous uint8 buffer holding every key and value in record order. Headers are not kept."""

    topic: str
    partition: int
    offsets: np.ndarray
    timestamps: np.ndarray
    key_starts: np.ndarray
    key_lengths: np.ndarray
    value_starts: np.ndarray
    value_lengths: np.ndarray
    data: np.ndarray
    next_offset: int

    def __len__(self) -> int:
        return len(self.offsets)

    def key(self, i: int) -> bytes | None:
        length = int(self.key_lengths[i])
        start = int(self.key_starts[i])
        return None if length < 0 else self.data[start : start + length].tobytes()

    def value(self, i: int) -> bytes | None:
        length = int(self.value_lengths[i])
        start = int(self.value_starts[i])
        return None if length < 0 else self.data[start : start + length].tobytes()


def read_columns(
    partition: Partition, offset: int, max_records: int, max_bytes: int, isolation: IsolationLevel
) -> Columns:
    try:
        import numpy as np
    except ImportError:  # an optional dependency
        raise ImportError("columnar reads need numpy: pip install numpy") from None
    topic, index = partition.topic_partition
    bound = upper_bound(partition, isolation)
    batches = list(_chunks(partition, offset, max_bytes, bound))
    capacity = min(max_records, sum(h.record_count for h, _ in batches))
    builder = ColumnBuilder(capacity, sum(h.size_bytes for h, _ in batches))
    next_offset = offset
    for header, batch in batches:
        if not header.is_control:
            append_time = header.max_timestamp if header.is_log_append_time else -1
            payload = _payload(header, batch)
            builder.add(payload, header.base_offset, header.base_timestamp, header.record_count, append_time, offset)
            if builder.count >= max_records:
                next_offset = int(builder.offsets[builder.count - 1]) + 1
                break
        next_offset = header.last_offset + 1
    n = builder.count

    def column(values: Any, dtype: Any) -> np.ndarray:
        return np.frombuffer(values, dtype=dtype, count=n)

    return Columns(
        topic,
        index,
        column(builder.offsets, np.int64),
        column(builder.timestamps, np.int64),
        column(builder.key_starts, np.int64),
        column(builder.key_lengths, np.int32),
        column(builder.value_starts, np.int64),
        column(builder.value_lengths, np.int32),
        np.frombuffer(builder.data, dtype=np.uint8, count=builder.data_size),
        max(next_offset, offset),
    )
