"""Reading a partition in process: records as Python objects, or as columns.

Reads run in the caller's thread (the native log is thread-safe), up to the high watermark
(read_uncommitted) or the last stable offset (read_committed), exactly as a fetch would. Every
batch's CRC-32C is checked, as Kafka's consumers do; compressed batches are decompressed by the
engine; control batches (transaction markers) are stepped over, and at read_committed so are
the batches of aborted transactions (the `.txnindex` entries of the range say which: a Kafka
consumer drops the same ones). Records are decoded in the compiled `_records` module (Record
objects, or columns written straight into arrays).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import crc32c
from kio.schema.errors import ErrorCode

from tidelog import limits
from tidelog.core.errors import error_code_for
from tidelog.core.partition import Partition
from tidelog.core.types import IsolationLevel
from tidelog.errors import KafkaError
from tidelog.protocol.record_batch import (
    HEADER_BYTES,
    LOG_OVERHEAD,
    BatchHeader,
    ColumnBuilder,
    Record,
    RecordDecodeError,
    decode_batches,
)
from tidelog.storage import StorageError, decompress

if TYPE_CHECKING:
    import numpy as np


def upper_bound(partition: Partition, isolation: IsolationLevel) -> int:
    if isolation == IsolationLevel.READ_COMMITTED:
        return partition.last_stable_offset
    return partition.high_watermark


_buffers = threading.local()


def _scratch(size: int) -> memoryview:
    """A writable view of `size` bytes of this thread's read buffer (its contents are decoded,
    i.e. copied out, before the next piece is read)."""
    buffer: bytearray | None = getattr(_buffers, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = _buffers.buffer = bytearray(max(size, limits.EMBEDDED_READ_PIECE_BYTES))
    return memoryview(buffer)[:size]


def _committed_only(data: memoryview, aborted: list[tuple[int, int, int]]) -> Iterator[memoryview]:
    """The runs of whole batches in `data` that belong to no aborted transaction."""
    run_start = at = 0
    while at + HEADER_BYTES <= len(data):
        header = BatchHeader.read(data, at)
        end = at + LOG_OVERHEAD + header.batch_length
        if header.is_transactional and not header.is_control and _is_aborted(header, aborted):
            if at > run_start:
                yield data[run_start:at]
            run_start = end
        at = end
    if len(data) > run_start:
        yield data[run_start:]


def _is_aborted(header: BatchHeader, aborted: list[tuple[int, int, int]]) -> bool:
    return any(pid == header.producer_id and first <= header.base_offset <= last for pid, first, last in aborted)


def _pieces(partition: Partition, offset: int, max_bytes: int, bound: int) -> Iterator[tuple[memoryview, int]]:
    """(whole batches, the offset after them) from `offset` up to `bound`, about `max_bytes` in
    all. An offset outside the log is
    OFFSET_OUT_OF_RANGE, as a fetch answers it."""
    start, end = partition.log_start_offset, partition.log_end_offset
    if not start <= offset <= end:
        message = f"offset {offset} is outside [{start}, {end}] of {partition.topic_partition}"
        raise KafkaError.of(ErrorCode.offset_out_of_range, message)
    budget, position = max_bytes, offset
    while position < bound and budget > 0:
        # In pieces, so a read that stops at max_records copies little more than it decodes; each
        # piece holds at least one batch (the last may pass max_bytes by that batch: "about").
        piece_bytes = max(min(budget, limits.EMBEDDED_READ_PIECE_BYTES), 0)
        try:
            piece = partition.read(position, piece_bytes, bound, min_one_batch=True)
        except StorageError as error:
            raise KafkaError.of(error_code_for(error), str(error)) from None
        if piece is None:
            return
        data = _scratch(piece.size)
        piece.read_into(data)  # into this thread's buffer: no fresh pages per piece
        budget -= piece.size
        position = piece.last_offset + 1
        yield data, position


def _decompress(codec: int, records: memoryview) -> bytes:
    try:
        return decompress(codec, records)
    except StorageError as error:
        raise KafkaError.of(error_code_for(error), str(error)) from None


def _decode(data: memoryview, offset: int, limit: int, sink: Any, partition: Partition) -> tuple[int, int]:
    """Every batch of `data` into `sink`: CRC-32C checked (as Kafka's consumers check it),
    control batches stepped over, compressed ones decompressed by the engine."""
    topic, index = partition.topic_partition
    try:
        return decode_batches(data, offset, limit, sink, topic, index, crc32c.crc32c, _decompress)
    except RecordDecodeError as error:
        raise KafkaError.of(ErrorCode.corrupt_message, f"{partition.topic_partition}: {error}") from None


def read_records(
    partition: Partition, offset: int, max_records: int, max_bytes: int, isolation: IsolationLevel
) -> tuple[list[Record], int]:
    """Records from `offset` (at most `max_records`, about `max_bytes` of batches), and the offset
    to read from next."""
    out: list[Record] = []
    next_offset = offset
    for data, skip_to in _readable(partition, offset, max_bytes, isolation):
        if not data:
            next_offset = max(next_offset, skip_to)
            continue
        next_offset, _ = _decode(data, offset, max_records - len(out), out, partition)
        if len(out) >= max_records:
            break
    return out, max(next_offset, offset)


def _readable(
    partition: Partition, offset: int, max_bytes: int, isolation: IsolationLevel
) -> Iterator[tuple[memoryview, int]]:
    """Batches to decode up to the isolation's bound; at read_committed without the batches of
    aborted transactions, each filtered piece followed by an empty view and the offset after
    it (so a piece that ends in aborted batches is read past)."""
    bound = upper_bound(partition, isolation)
    aborted = partition.aborted_ranges(offset, bound) if isolation == IsolationLevel.READ_COMMITTED else []
    for data, end in _pieces(partition, offset, max_bytes, bound):
        if not aborted:
            yield data, offset
            continue
        for run in _committed_only(data, aborted):
            yield run, offset
        yield data[:0], end


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
    # Arrays for max_records up front (a few dozen bytes a record); the data buffer grows as needed.
    builder = ColumnBuilder(max_records, min(max_bytes, limits.EMBEDDED_READ_PIECE_BYTES))
    next_offset = offset
    for data, skip_to in _readable(partition, offset, max_bytes, isolation):
        if not data:
            next_offset = max(next_offset, skip_to)
            continue
        next_offset, _ = _decode(data, offset, max_records - builder.count, builder, partition)
        if builder.count >= max_records:
            break
    n = builder.count

    def column(values: Any, dtype: Any) -> np.ndarray:
        return np.frombuffer(values, dtype=dtype, count=n)

    topic, index = partition.topic_partition
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
