"""Reading Kafka's coordinator records (`__consumer_offsets`, `__transaction_state`): a
big-endian int16 version, then the fields of that version; flexible versions use compact
lengths and tagged fields. Writing goes through `protocol.wire.Encoder`."""

from __future__ import annotations

import struct

INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")
INT64 = struct.Struct(">q")


class CoordinatorRecordError(ValueError):
    """A `__consumer_offsets` record that does not parse."""


class RecordReader:
    """Reads fields of one version; `flexible` switches to compact strings and tagged fields."""

    def __init__(self, data: bytes | memoryview, flexible: bool = False) -> None:
        self.data = memoryview(data)
        self.at = 0
        self.flexible = flexible

    def _take(self, size: int) -> memoryview:
        if size < 0 or self.at + size > len(self.data):
            raise CoordinatorRecordError("record runs past its end")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def int8(self) -> int:
        return int.from_bytes(self._take(1), "big", signed=True)

    def int16(self) -> int:
        return int(INT16.unpack(self._take(2))[0])

    def int32(self) -> int:
        return int(INT32.unpack(self._take(4))[0])

    def int64(self) -> int:
        return int(INT64.unpack(self._take(8))[0])

    def uvarint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self._take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise CoordinatorRecordError("varint too long")

    def _length(self, wide: bool) -> int:
        if self.flexible:
            return self.uvarint() - 1
        return self.int32() if wide else self.int16()

    def string(self) -> str | None:
        length = self._length(wide=False)
        if length < 0:
            return None
        try:
            return bytes(self._take(length)).decode()
        except UnicodeDecodeError as error:
            raise CoordinatorRecordError(f"string is not UTF-8: {error}") from None

    def required_string(self) -> str:
        value = self.string()
        if value is None:
            raise CoordinatorRecordError("null where a string is required")
        return value

    def bytes_(self) -> bytes:
        length = self._length(wide=True)
        return b"" if length < 0 else bytes(self._take(length))

    def array_length(self) -> int:
        length = self._length(wide=True)
        if length > len(self.data):  # each element takes at least a byte
            raise CoordinatorRecordError("array longer than the record")
        return max(length, 0)

    def tagged_fields(self) -> list[tuple[int, bytes]]:
        """The (tag, payload) pairs of a tagged-field section (flexible versions)."""
        fields = []
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            fields.append((tag, bytes(self._take(self.uvarint()))))
        return fields

    def skip_tagged_fields(self) -> None:
        if self.flexible:
            for _ in range(self.uvarint()):
                self.uvarint()
                self._take(self.uvarint())
