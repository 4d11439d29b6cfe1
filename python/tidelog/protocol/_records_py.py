"""Records inside a magic-v2 batch: the pure-Python reference implementation.

`ext/_records.pyx` is its compiled twin with the same API; `record_batch.py` picks one. Each record:
varint length, int8 attributes, varlong timestamp delta, varint offset delta, varint-sized key
and value (-1 = null), varint header count, then per header a varint-sized UTF-8 key and a
varint-sized value. Varints are zigzag-encoded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

Header = tuple[str, bytes | None]
# (timestamp_ms, key, value, headers), what a producer hands over.
RecordInput = tuple[int, bytes | None, bytes | None, Sequence[Header]]
# (offset, timestamp_ms, key, value, headers), what the coordinators' replay reads.
RecordTuple = tuple[int, int, bytes | None, bytes | None, list[Header]]

VARINT_BYTES_MAX = 10


class RecordDecodeError(ValueError):
    """The records section does not parse."""


def _put_varint(out: bytearray, value: int) -> None:
    zigzag = (value << 1) ^ (value >> 63)
    while zigzag >= 0x80:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)


def _put_bytes(out: bytearray, data: bytes | None) -> None:
    if data is None:
        _put_varint(out, -1)
    else:
        _put_varint(out, len(data))
        out += data


def plain_inputs(records: Sequence[object], timestamp: int) -> list[RecordInput] | None:
    """The inputs of records given in the usual shapes, a value (bytes) or a (key, value) pair
    of bytes or None, all stamped `timestamp`; None as soon as one record has another shape
    (the caller then checks each record the long way)."""
    out: list[RecordInput] = []
    for record in records:
        if type(record) is bytes:
            out.append((timestamp, None, record, ()))
        elif type(record) is tuple and len(record) == 2:
            key: object = record[0]
            value: object = record[1]
            if (key is None or type(key) is bytes) and (value is None or type(value) is bytes):
                out.append((timestamp, key, value, ()))
            else:
                return None
        else:
            return None
    return out


def encode_records(records: Sequence[RecordInput], base_timestamp: int) -> bytes:
    """The records section for `records`, offset deltas 0..n-1."""
    out = bytearray()
    body = bytearray()
    for offset_delta, (timestamp, key, value, headers) in enumerate(records):
        body.clear()
        body.append(0)
        _put_varint(body, timestamp - base_timestamp)
        _put_varint(body, offset_delta)
        _put_bytes(body, key)
        _put_bytes(body, value)
        _put_varint(body, len(headers))
        for header_key, header_value in headers:
            _put_bytes(body, header_key.encode())
            _put_bytes(body, header_value)
        _put_varint(out, len(body))
        out += body
    return bytes(out)


class _Reader:
    __slots__ = ("data", "at")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = memoryview(data)
        self.at = 0

    def varint(self) -> int:
        value = 0
        for shift in range(0, 7 * VARINT_BYTES_MAX, 7):
            if self.at >= len(self.data):
                raise RecordDecodeError("varint runs past the end of the records")
            byte = self.data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (value >> 1) ^ -(value & 1)
        raise RecordDecodeError("varint longer than 10 bytes")

    def sized(self) -> bytes | None:
        size = self.varint()
        if size < 0:
            return None
        end = self.at + size
        if end > len(self.data):
            raise RecordDecodeError(f"field of {size} bytes runs past the end of the records")
        chunk = bytes(self.data[self.at : end])
        self.at = end
        return chunk


def decode_records(
    data: bytes | bytearray | memoryview, base_offset: int, base_timestamp: int, count: int
) -> list[RecordTuple]:
    """The `count` records in an uncompressed records section."""
    reader = _Reader(data)
    records: list[RecordTuple] = []
    for _ in range(count):
        length = reader.varint()
        end = reader.at + length
        if length < 0 or end > len(reader.data):
            raise RecordDecodeError(f"record of {length} bytes runs past the end of the records")
        reader.at += 1  # attributes, unused in v2
        timestamp = base_timestamp + reader.varint()
        offset = base_offset + reader.varint()
        key = reader.sized()
        value = reader.sized()
        headers: list[Header] = []
        for _ in range(reader.varint()):
            header_key = reader.sized()
            if header_key is None:
                raise RecordDecodeError("null header key")
            headers.append((header_key.decode(), reader.sized()))
        if reader.at != end:
            raise RecordDecodeError("record length does not match its fields")
        records.append((offset, timestamp, key, value, headers))
    return records


# ---- records for readers (the embedded API) ------------------------------------------------


class Record:
    """One record as a reader gets it: where it is (topic, partition, offset), its timestamp,
    key, value and headers ((name, value) pairs). Keys and values are bytes or None."""

    __slots__ = ("topic", "partition", "offset", "timestamp", "key", "value", "headers")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        headers: tuple[Header, ...] = (),
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers

    def _fields(self) -> tuple[object, ...]:
        return (self.topic, self.partition, self.offset, self.timestamp, self.key, self.value, self.headers)

    def __eq__(self, other: object) -> bool:
        if not hasattr(other, "headers") or not hasattr(other, "offset"):
            return NotImplemented
        return self._fields() == _record_fields(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Record(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"timestamp={self.timestamp}, key={self.key!r}, value={self.value!r}, headers={self.headers!r})"
        )


def _record_fields(record: object) -> tuple[object, ...]:
    names = ("topic", "partition", "offset", "timestamp", "key", "value", "headers")
    return tuple(getattr(record, name) for name in names)


def decode_into(
    out: list[Record],
    data: bytes | bytearray | memoryview,
    base_offset: int,
    base_timestamp: int,
    count: int,
    log_append_time: int,
    topic: str,
    partition: int,
    min_offset: int,
    limit: int,
) -> int:
    """Appends to `out` the records of an uncompressed records section whose offset is at least
    `min_offset`, at most `limit` of them; returns how many. `log_append_time` >= 0 replaces every
    record's timestamp (a LogAppendTime batch)."""
    added = 0
    for offset, timestamp, key, value, headers in decode_records(data, base_offset, base_timestamp, count):
        if added >= limit:
            break
        if offset < min_offset:
            continue
        stamp = log_append_time if log_append_time >= 0 else timestamp
        out.append(Record(topic, partition, offset, stamp, key, value, tuple(headers)))
        added += 1
    return added


class ColumnBuilder:
    """Records decoded into columns: offsets, timestamps, and each key's and value's place in one
    contiguous byte buffer (start, length; length -1 for null). Headers are not kept."""

    def __init__(self, capacity: int, data_capacity: int) -> None:
        import array

        self.capacity = capacity
        self.count = 0
        self.offsets = array.array("q", bytes(8 * capacity))
        self.timestamps = array.array("q", bytes(8 * capacity))
        self.key_starts = array.array("q", bytes(8 * capacity))
        self.key_lengths = array.array("i", bytes(4 * capacity))
        self.value_starts = array.array("q", bytes(8 * capacity))
        self.value_lengths = array.array("i", bytes(4 * capacity))
        self.data = bytearray(data_capacity)
        self.data_size = 0

    def _place(self, chunk: bytes | None) -> tuple[int, int]:
        if chunk is None:
            return self.data_size, -1
        start = self.data_size
        end = start + len(chunk)
        if end > len(self.data):  # decompressed data outgrew the estimate: double
            self.data.extend(bytes(max(end - len(self.data), len(self.data))))
        self.data[start:end] = chunk
        self.data_size = end
        return start, len(chunk)

    def add(
        self,
        data: bytes | bytearray | memoryview,
        base_offset: int,
        base_timestamp: int,
        count: int,
        log_append_time: int,
        min_offset: int,
    ) -> int:
        """Adds the records of an uncompressed records section (offset >= `min_offset`) until the
        builder is full; returns how many were added."""
        added = 0
        for offset, timestamp, key, value, _ in decode_records(data, base_offset, base_timestamp, count):
            if self.count >= self.capacity:
                break
            if offset < min_offset:
                continue
            i = self.count
            self.offsets[i] = offset
            self.timestamps[i] = log_append_time if log_append_time >= 0 else timestamp
            self.key_starts[i], self.key_lengths[i] = self._place(key)
            self.value_starts[i], self.value_lengths[i] = self._place(value)
            self.count += 1
            added += 1
        return added


MURMUR2_SEED = 0x9747B28C
MURMUR2_M = 0x5BD1E995
MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (the Java client's partitioner hash), as a signed 32-bit int."""
    length = len(data)
    h = (MURMUR2_SEED ^ length) & MASK32
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * MURMUR2_M) & MASK32
        k ^= k >> 24
        k = (k * MURMUR2_M) & MASK32
        h = ((h * MURMUR2_M) & MASK32) ^ k
    tail = length % 4
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * MURMUR2_M) & MASK32
    h ^= h >> 13
    h = (h * MURMUR2_M) & MASK32
    h ^= h >> 15
    return h - (1 << 32) if h >= 1 << 31 else h


_BATCH_HEAD = struct.Struct(">qiibIhiqqqhii")  # the magic-v2 header (record_batch.HEADER)
_HEAD_BYTES = 61
_CRC_START = 21
_OVERHEAD = 12
_COMPRESSION = 0x07
_APPEND_TIME = 0x08
_CONTROL = 0x20


def decode_batches(
    data: bytes | bytearray | memoryview,
    min_offset: int,
    limit: int,
    sink: list[Record] | ColumnBuilder,
    topic: str,
    partition: int,
    crc: Callable[[memoryview], int],
    decompress: Callable[[int, memoryview], bytes],
) -> tuple[int, int]:
    """Walks whole batches back to back (a read of the log): checks each one's CRC-32C with
    `crc`, steps over control batches, decompresses with `decompress`, and decodes the records
    at or after `min_offset` into `sink` (Record objects into a list, or a ColumnBuilder), at
    most `limit` of them. Returns (the offset to read from next, records added)."""
    view = memoryview(data)
    at, added, next_offset = 0, 0, min_offset
    while at + _HEAD_BYTES <= len(view) and added < limit:
        base, length, _, _, stored_crc, attributes, last_delta, base_ts, max_ts, _, _, _, count = (
            _BATCH_HEAD.unpack_from(view, at)
        )
        size = length + _OVERHEAD
        if size < _HEAD_BYTES or at + size > len(view):
            break
        if crc(view[at + _CRC_START : at + size]) != stored_crc:
            raise RecordDecodeError(f"the batch at offset {base} fails its CRC-32C")
        if not attributes & _CONTROL:
            records = view[at + _HEAD_BYTES : at + size]
            payload = decompress(attributes & _COMPRESSION, records) if attributes & _COMPRESSION else records
            append_time = max_ts if attributes & _APPEND_TIME else -1
            if isinstance(sink, list):
                got = decode_into(
                    sink, payload, base, base_ts, count, append_time, topic, partition, min_offset, limit - added
                )
            else:
                got = sink.add(payload, base, base_ts, count, append_time, min_offset)
            added += got
            if added >= limit or (not isinstance(sink, list) and sink.count >= sink.capacity):
                last = sink[-1].offset if isinstance(sink, list) else sink.offsets[sink.count - 1]
                return max(last + 1, next_offset), added
        next_offset = max(next_offset, base + last_delta + 1)
        at += size
    return next_offset, added
