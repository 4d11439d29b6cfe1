"""Hand-written encoding of Kafka primitives, for the responses on the hot path.

`Encoder(flexible)` picks compact strings and arrays and adds tagged-field sections for
flexible versions. It collects parts; `FileSlice`-like parts (anything with `size`) are kept
as they are so their bytes can go out with sendfile.
"""

from __future__ import annotations

import struct
from typing import Protocol

INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")
INT64 = struct.Struct(">q")


class Sendable(Protocol):
    """Bytes that stay in a file until sent (a storage FileSlice)."""

    @property
    def size(self) -> int: ...
    @property
    def position(self) -> int: ...
    def fileno(self) -> int: ...
    def read(self) -> bytes: ...


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class Encoder:
    __slots__ = ("flexible", "parts", "_buffer")

    def __init__(self, flexible: bool) -> None:
        self.flexible = flexible
        self.parts: list[bytes | Sendable] = []
        self._buffer = bytearray()

    def int16(self, value: int) -> None:
        self._buffer += INT16.pack(value)

    def int32(self, value: int) -> None:
        self._buffer += INT32.pack(value)

    def int64(self, value: int) -> None:
        self._buffer += INT64.pack(value)

    def raw(self, data: bytes) -> None:
        self._buffer += data

    def string(self, value: str | None) -> None:
        if value is None:
            self._buffer += uvarint(0) if self.flexible else INT16.pack(-1)
            return
        data = value.encode()
        self._buffer += uvarint(len(data) + 1) if self.flexible else INT16.pack(len(data))
        self._buffer += data

    def bytes_(self, value: bytes | None) -> None:
        """A bytes field (int32 length, or compact; None: a null field)."""
        if value is None:
            self._buffer += uvarint(0) if self.flexible else INT32.pack(-1)
            return
        self._buffer += uvarint(len(value) + 1) if self.flexible else INT32.pack(len(value))
        self._buffer += value

    def array_length(self, count: int | None) -> None:
        """Length of an array (None: a null array)."""
        if self.flexible:
            self._buffer += uvarint(0 if count is None else count + 1)
        else:
            self._buffer += INT32.pack(-1 if count is None else count)

    def tagged_fields(self) -> None:
        """An empty tagged-field section (flexible versions only)."""
        if self.flexible:
            self._buffer.append(0)

    def records(self, data: Sendable | None) -> None:
        """A records field: length, then the bytes, which stay in their file."""
        size = 0 if data is None else data.size
        self._buffer += uvarint(size + 1) if self.flexible else INT32.pack(size)
        if data is not None and data.size:
            self.parts.append(bytes(self._buffer))
            self._buffer.clear()
            self.parts.append(data)

    def to_bytes(self) -> bytes:
        """Everything written, for encodings without file parts (coordinator records)."""
        assert not self.parts, "file parts cannot be joined into bytes"
        return bytes(self._buffer)

    def finish(self) -> list[bytes | Sendable]:
        if self._buffer:
            self.parts.append(bytes(self._buffer))
            self._buffer.clear()
        return self.parts


def parts_size(parts: list[bytes | Sendable]) -> int:
    return sum(len(p) if isinstance(p, bytes) else p.size for p in parts)


def materialize(parts: list[bytes | Sendable]) -> bytes:
    """All parts as one bytes object (for TLS, tests, and comparing with kio)."""
    return b"".join(p if isinstance(p, bytes) else p.read() for p in parts)
