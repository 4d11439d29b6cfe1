"""The magic-v2 record batch: the one definition of its header, attribute bits and control records.

Every Python reader of a batch header (the produce rules, storage, the coordinators, tests) takes
its offsets, flags and struct layouts from here; the Rust engine has its own twin in
`rust/storage/src/batch.rs`. Layout, big-endian, as on the wire and on disk:

     0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8
    17 crc u32 (CRC-32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
    27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
    53 baseSequence i32 | 57 recordCount i32 | 61 records...

`baseOffset`, `batchLength` and `partitionLeaderEpoch` sit outside the CRC, so a broker can
assign offsets and epochs without recomputing it.

Record-level encoding comes from the compiled `_records` module when it is built and
`TIDELOG_NO_EXTENSIONS` is unset, else from the pure-Python `_records_py` twin. Batches are built
uncompressed; the broker stores compressed ones as producers sent them.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from types import ModuleType

import crc32c

from tidelog.protocol import _records_py
from tidelog.protocol._records_py import Header, Record, RecordDecodeError, RecordInput, RecordTuple

__all__ = [
    "HEADER",
    "IMPLEMENTATION",
    "BatchHeader",
    "ControlRecordType",
    "Header",
    "Record",
    "RecordDecodeError",
    "RecordInput",
    "RecordTuple",
    "build_batch",
    "build_control_batch",
    "decode_batch",
    "iter_batches",
    "parse_control_record",
]

NO_EXTENSIONS = bool(os.environ.get("TIDELOG_NO_EXTENSIONS"))

encode_records: Callable[[Sequence[RecordInput], int], bytes]
decode_records: Callable[[bytes | bytearray | memoryview, int, int, int], list[RecordTuple]]
_twin: ModuleType = _records_py
if not NO_EXTENSIONS:
    try:
        from tidelog.protocol import _records  # type: ignore[attr-defined]

        _twin = _records
    except ImportError:  # not built: the twin serves
        pass
IMPLEMENTATION = "python" if _twin is _records_py else "cython"
encode_records, decode_records = _twin.encode_records, _twin.decode_records
plain_inputs: Callable[[Sequence[object], int], list[RecordInput] | None] = _twin.plain_inputs
# For readers: Record objects, columns, and Kafka's partitioner hash, from the same twin.
decode_into: Callable[..., int] = _twin.decode_into
decode_batches: Callable[..., tuple[int, int]] = _twin.decode_batches
ColumnBuilder: Callable[[int, int], _records_py.ColumnBuilder] = _twin.ColumnBuilder
RecordClass: type[Record] = _twin.Record
murmur2: Callable[[bytes], int] = _twin.murmur2

# ---- the layout ------------------------------------------------------------------------------

# (field, struct code), in header order. Every offset and struct below is derived from this table.
FIELDS: tuple[tuple[str, str], ...] = (
    ("base_offset", "q"),
    ("batch_length", "i"),
    ("partition_leader_epoch", "i"),
    ("magic", "b"),
    ("crc", "I"),
    ("attributes", "h"),
    ("last_offset_delta", "i"),
    ("base_timestamp", "q"),
    ("max_timestamp", "q"),
    ("producer_id", "q"),
    ("producer_epoch", "h"),
    ("base_sequence", "i"),
    ("record_count", "i"),
)


def _offsets() -> dict[str, int]:
    at, offsets = 0, {}
    for name, code in FIELDS:
        offsets[name] = at
        at += struct.calcsize(">" + code)
    offsets["records"] = at
    return offsets


OFFSET_OF = _offsets()
HEADER = struct.Struct(">" + "".join(code for _, code in FIELDS))
CRC = struct.Struct(">I")
HEADER_BYTES = HEADER.size  # 61
# baseOffset and batchLength: the bytes a batch's `batchLength` does not count.
LOG_OVERHEAD = OFFSET_OF["partition_leader_epoch"]
CRC_START = OFFSET_OF["attributes"]
PRODUCER_ID_OFFSET = OFFSET_OF["producer_id"]
assert HEADER_BYTES == OFFSET_OF["records"] == 61 and LOG_OVERHEAD == 12 and CRC_START == 21


def view(*names: str) -> tuple[struct.Struct, int]:
    """A struct reading only `names` (in header order, gaps skipped) and the offset it starts at:
    one unpack reads a few fields without building a whole header."""
    codes = dict(FIELDS)
    start = OFFSET_OF[names[0]]
    at, layout = start, ">"
    for name in names:
        gap = OFFSET_OF[name] - at
        assert gap >= 0, f"{name} is out of header order"
        layout += f"{gap}x" if gap else ""
        layout += codes[name]
        at = OFFSET_OF[name] + struct.calcsize(">" + codes[name])
    return struct.Struct(layout), start


# What the produce path reads of every batch with one unpack.
PRODUCER_FIELDS, PRODUCER_FIELDS_AT = view(
    "magic", "attributes", "last_offset_delta", "max_timestamp", "producer_id", "producer_epoch", "base_sequence"
)
BATCH_LENGTH, BATCH_LENGTH_AT = view("batch_length")

MAGIC_V2 = 2
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1

# Attribute bits.
COMPRESSION_MASK = 0x07
LOG_APPEND_TIME_FLAG = 0x08
TRANSACTIONAL_FLAG = 0x10
CONTROL_FLAG = 0x20
DELETE_HORIZON_FLAG = 0x40


class Compression(enum.IntEnum):
    """The codec id in the low three attribute bits."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


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

    @classmethod
    def read(cls, data: bytes | bytearray | memoryview, at: int = 0) -> BatchHeader:
        return cls(*HEADER.unpack_from(data, at))

    @property
    def size_bytes(self) -> int:
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_FLAG)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_FLAG)

    @property
    def is_log_append_time(self) -> bool:
        return bool(self.attributes & LOG_APPEND_TIME_FLAG)


def batch_length_of(data: bytes | bytearray | memoryview) -> int | None:
    """The `batchLength` field of the batch at the start of `data`; None if `data` is too short."""
    if len(data) < LOG_OVERHEAD:
        return None
    return int(BATCH_LENGTH.unpack_from(data, BATCH_LENGTH_AT)[0])


_timestamp_of = itemgetter(0)  # of a RecordInput

# ---- building --------------------------------------------------------------------------------


def build_batch(
    records: Sequence[RecordInput],
    *,
    base_offset: int = 0,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    transactional: bool = False,
    control: bool = False,
) -> bytes:
    """An uncompressed magic-v2 batch holding `records`, CRC filled in, as a producer sends it."""
    if not records:
        raise ValueError("a batch holds at least one record")
    base_timestamp = records[0][0]
    body = encode_records(records, base_timestamp)
    attributes = (TRANSACTIONAL_FLAG if transactional else 0) | (CONTROL_FLAG if control else 0)
    header = HEADER.pack(
        base_offset,
        HEADER_BYTES - LOG_OVERHEAD + len(body),
        NO_PARTITION_LEADER_EPOCH,
        MAGIC_V2,
        0,
        attributes,
        len(records) - 1,
        base_timestamp,
        max(map(_timestamp_of, records)),
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    crc = crc32c.crc32c(body, crc32c.crc32c(header[CRC_START:]))
    at = OFFSET_OF["crc"]
    return b"".join((header[:at], CRC.pack(crc), header[CRC_START:], body))


# ---- control records (transaction markers) ---------------------------------------------------


class ControlRecordType(enum.IntEnum):
    """The type in a control record's key (Kafka's `ControlRecordType`)."""

    ABORT = 0
    COMMIT = 1


CONTROL_RECORD_VERSION = 0
# Key: int16 version, int16 type. Value (an end-transaction marker): int16 version, int32
# coordinator epoch.
CONTROL_KEY = struct.Struct(">hh")
END_TXN_MARKER_VALUE = struct.Struct(">hi")


def build_control_batch(
    marker: ControlRecordType, producer_id: int, producer_epoch: int, coordinator_epoch: int, timestamp_ms: int
) -> bytes:
    """A transaction marker as the transaction coordinator writes it into a partition: a
    transactional control batch of one record, without a sequence."""
    key = CONTROL_KEY.pack(CONTROL_RECORD_VERSION, marker)
    value = END_TXN_MARKER_VALUE.pack(CONTROL_RECORD_VERSION, coordinator_epoch)
    return build_batch(
        [(timestamp_ms, key, value, ())],
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        transactional=True,
        control=True,
    )


def parse_control_record(key: bytes | None, value: bytes | None) -> tuple[ControlRecordType, int]:
    """(marker type, coordinator epoch) of an end-transaction control record."""
    if key is None or len(key) < CONTROL_KEY.size:
        raise RecordDecodeError("a control record's key holds a version and a type")
    _, marker = CONTROL_KEY.unpack_from(key)
    if marker not in (ControlRecordType.ABORT, ControlRecordType.COMMIT):
        raise RecordDecodeError(f"control record type {marker} is not a transaction marker")
    coordinator_epoch = -1
    if value is not None and len(value) >= END_TXN_MARKER_VALUE.size:
        coordinator_epoch = END_TXN_MARKER_VALUE.unpack_from(value)[1]
    return ControlRecordType(marker), coordinator_epoch


# ---- reading ---------------------------------------------------------------------------------


def iter_batches(data: bytes | bytearray | memoryview) -> list[tuple[BatchHeader, memoryview]]:
    """Splits whole batches back to back (a fetch answer, a segment) into (header, bytes)."""
    view_ = memoryview(data)
    batches = []
    at = 0
    while at + HEADER_BYTES <= len(view_):
        header = BatchHeader.read(view_, at)
        if header.size_bytes > len(view_) - at:
            break  # a partial batch at the end of a fetch answer is normal
        batches.append((header, view_[at : at + header.size_bytes]))
        at += header.size_bytes
    return batches


def check_crc(header: BatchHeader, batch: bytes | bytearray | memoryview) -> None:
    if crc32c.crc32c(memoryview(batch)[CRC_START:]) != header.crc:
        raise RecordDecodeError("CRC-32C mismatch")


def decode_batch(batch: bytes | bytearray | memoryview) -> tuple[BatchHeader, list[RecordTuple]]:
    """Header and records of one whole uncompressed batch, after checking its CRC."""
    view_ = memoryview(batch)
    header = BatchHeader.read(view_)
    if header.magic != MAGIC_V2 or header.size_bytes != len(view_):
        raise RecordDecodeError(f"not one whole magic-v2 batch (magic {header.magic})")
    check_crc(header, view_)
    if header.compression:
        raise RecordDecodeError(f"compressed batch (codec {header.compression})")
    records = decode_records(view_[HEADER_BYTES:], header.base_offset, header.base_timestamp, header.record_count)
    if header.is_log_append_time:
        records = [(o, header.max_timestamp, k, v, h) for o, _, k, v, h in records]
    return header, records
