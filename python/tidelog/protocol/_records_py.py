"""Records inside a magic-v2 batch: the pure-Python reference implementation.

`ext/_records.pyx` is its compiled twin with the same API; `records.py` picks one. Each record:
varint length, int8 attributes, varlong timestamp delta, varint offset delta, varint-sized key
and value (-1 = null), varint header count, then per header a varint-sized UTF-8 key and a
varint-sized value. Varints are zigzag-encoded.
"""

from __future__ import annotations

from collections.abc import Sequence

Header = tuple[str, bytes | None]
# (timestamp_ms, key, value, headers), what a producer hands over.
RecordInput = tuple[int, bytes | None, bytes | None, Sequence[Header]]
# (offset, timestamp_ms, key, value, headers), what a reader gets.
Record = tuple[int, int, bytes | None, bytes | None, list[Header]]

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
) -> list[Record]:
    """The `count` records in an uncompressed records section."""
    reader = _Reader(data)
    records: list[Record] = []
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
