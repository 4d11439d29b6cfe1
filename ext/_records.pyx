# cython: language_level=3
"""Compiled twin of tidelog/protocol/_records_py.py: same functions, same results.

Decoding builds a tuple per record; in pure Python the varint loops dominate, here they are C.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint64_t

from tidelog.protocol._records_py import RecordDecodeError

cdef int VARINT_BYTES_MAX = 10


cdef inline void put_varint(bytearray out, int64_t value):
    cdef uint64_t zigzag = <uint64_t>((value << 1) ^ (value >> 63))
    while zigzag >= 0x80:
        out.append(<int>((zigzag & 0x7F) | 0x80))
        zigzag >>= 7
    out.append(<int>zigzag)


cdef inline void put_bytes(bytearray out, object data):
    if data is None:
        put_varint(out, -1)
    else:
        put_varint(out, len(data))
        out += data


def encode_records(records, int64_t base_timestamp):
    out = bytearray()
    body = bytearray()
    cdef Py_ssize_t offset_delta = 0
    for timestamp, key, value, headers in records:
        del body[:]
        body.append(0)
        put_varint(body, <int64_t>timestamp - base_timestamp)
        put_varint(body, offset_delta)
        put_bytes(body, key)
        put_bytes(body, value)
        put_varint(body, len(headers))
        for header_key, header_value in headers:
            put_bytes(body, header_key.encode())
            put_bytes(body, header_value)
        put_varint(out, len(body))
        out += body
        offset_delta += 1
    return bytes(out)


cdef class _Cursor:
    cdef const unsigned char[:] data
    cdef Py_ssize_t at
    cdef Py_ssize_t size

    def __cinit__(self, const unsigned char[:] data):
        self.data = data
        self.at = 0
        self.size = data.shape[0]

    cdef int64_t varint(self) except? -1:
        cdef uint64_t value = 0
        cdef int shift = 0
        cdef unsigned char byte
        while shift < 7 * VARINT_BYTES_MAX:
            if self.at >= self.size:
                raise RecordDecodeError("varint runs past the end of the records")
            byte = self.data[self.at]
            self.at += 1
            value |= (<uint64_t>(byte & 0x7F)) << shift
            if not byte & 0x80:
                return <int64_t>(value >> 1) ^ -(<int64_t>(value & 1))
            shift += 7
        raise RecordDecodeError("varint longer than 10 bytes")

    cdef object sized(self):
        cdef int64_t size = self.varint()
        if size < 0:
            return None
        if size > self.size - self.at:
            raise RecordDecodeError(f"field of {size} bytes runs past the end of the records")
        chunk = PyBytes_FromStringAndSize(<const char*>&self.data[self.at], size) if size else b""
        self.at += size
        return chunk


def decode_records(data, int64_t base_offset, int64_t base_timestamp, Py_ssize_t count):
    cdef _Cursor cursor = _Cursor(memoryview(data).cast("B"))
    cdef list records = []
    cdef int64_t length, end, timestamp, offset, header_count
    for _ in range(count):
        length = cursor.varint()
        if length < 0 or length > cursor.size - cursor.at:
            raise RecordDecodeError(f"record of {length} bytes runs past the end of the records")
        end = cursor.at + length
        cursor.at += 1
        timestamp = base_timestamp + cursor.varint()
        offset = base_offset + cursor.varint()
        key = cursor.sized()
        value = cursor.sized()
        headers = []
        header_count = cursor.varint()
        for _ in range(header_count):
            header_key = cursor.sized()
            if header_key is None:
                raise RecordDecodeError("null header key")
            headers.append((header_key.decode(), cursor.sized()))
        if cursor.at != end:
            raise RecordDecodeError("record length does not match its fields")
        records.append((offset, timestamp, key, value, headers))
    return records
