"""Magic-v2 record batches: build them (producers, tests) and read them (in-process readers).

Record-level encoding comes from the compiled `_records` module when it is built and
`TIDELOG_NO_EXTENSIONS` is unset, else from the pure-Python `_records_py` twin. Only
uncompressed batches are built or decoded here; the broker stores compressed ones as sent.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import crc32c

from tidelog.protocol import _records_py
from tidelog.protocol._records_py import Header, Record, RecordDecodeError, RecordInput

__all__ = [
    "BATCH_HEADER",
    "BatchHeader",
    "Header",
    "IMPLEMENTATION",
    "Record",
    "RecordDecodeError",
    "RecordInput",
    "build_batch",
    "decode_batch",
    "iter_batches",
]

NO_EXTENSIONS = bool(os.environ.get("TIDELOG_NO_EXTENSIONS"))

encode_records: Callable[[Sequence[RecordInput], int], bytes]
decode_records: Callable[[bytes | bytearray | memoryview, int, int, int], list[Record]]
if NO_EXTENSIONS:
    encode_records, decode_records = _records_py.encode_records, _records_py.decode_records
    IMPLEMENTATION = "python"
else:
    try:
        from tidelog.protocol import _records  # type: ignore[attr-defined]

        encode_records, decode_records = _records.encode_records, _records.decode_records
        IMPLEMENTATION = "cython"
    except ImportError:  # not built: the twin serves
        encode_records, decode_records = _records_py.encode_records, _records_py.decode_records
        IMPLEMENTATION = "python"

# baseOffset, batchLength, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta,
# baseTimestamp, maxTimestamp, producerId, producerEpoch, baseSequence, recordCount
BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")
CRC_START = 21
MAGIC_V2 = 2
TRANSACTIONAL_FLAG = 0x10
CONTROL_FLAG = 0x20
LOG_APPEND_TIME_FLAG = 0x08
COMPRESSION_MASK = 0x07


@dataclass(frozen=True, slots=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size_bytes(self) -> int:
        return self.batch_length + 12

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta


def build_batch(
    records: Sequence[RecordInput],
    *,
    base_offset: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
) -> bytes:
    """An uncompressed magic-v2 batch holding `records`, CRC filled in, as a producer sends it."""
    if not records:
        raise ValueError("a batch holds at least one record")
    base_timestamp = records[0][0]
    body = encode_records(records, base_timestamp)
    attributes = TRANSACTIONAL_FLAG if transactional else 0
    header = BATCH_HEADER.pack(
        base_offset,
        49 + len(body),
        -1,
        MAGIC_V2,
        0,
        attributes,
        len(records) - 1,
        base_timestamp,
        max(r[0] for r in records),
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    crc = crc32c.crc32c(header[CRC_START:] + body)
    return header[:17] + struct.pack(">I", crc) + header[CRC_START:] + body


def iter_batches(data: bytes | bytearray | memoryview) -> list[tuple[BatchHeader, memoryview]]:
    """Splits whole batches back to back (a fetch answer, a segment) into (header, bytes)."""
    view = memoryview(data)
    batches = []
    at = 0
    while at + BATCH_HEADER.size <= len(view):
        header = BatchHeader(*BATCH_HEADER.unpack_from(view, at))
        if header.size_bytes > len(view) - at:
            break  # a partial batch at the end of a fetch answer is normal
        batches.append((header, view[at : at + header.size_bytes]))
        at += header.size_bytes
    return batches


def decode_batch(batch: bytes | bytearray | memoryview) -> tuple[BatchHeader, list[Record]]:
    """Header and records of one whole uncompressed batch, after checking its CRC."""
    view = memoryview(batch)
    header = BatchHeader(*BATCH_HEADER.unpack_from(view, 0))
    if header.magic != MAGIC_V2 or header.size_bytes != len(view):
        raise RecordDecodeError(f"not one whole magic-v2 batch (magic {header.magic})")
    if crc32c.crc32c(view[CRC_START:]) != header.crc:
        raise RecordDecodeError("CRC-32C mismatch")
    if header.attributes & COMPRESSION_MASK:
        raise RecordDecodeError(f"compressed batch (codec {header.attributes & COMPRESSION_MASK})")
    records = decode_records(view[BATCH_HEADER.size :], header.base_offset, header.base_timestamp, header.record_count)
    if header.attributes & LOG_APPEND_TIME_FLAG:
        records = [(o, header.max_timestamp, k, v, h) for o, _, k, v, h in records]
    return header, records
