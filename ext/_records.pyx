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


# ---- records for readers (the embedded API) ------------------------------------------------

from cpython cimport array
import array as _array
from libc.string cimport memcpy
from libc.stdint cimport uint32_t


cdef class Record:
    """One record as a reader gets it (the twin of `_records_py.Record`)."""

    cdef readonly object topic
    cdef readonly long long partition
    cdef readonly long long offset
    cdef readonly long long timestamp
    cdef readonly object key
    cdef readonly object value
    cdef readonly tuple headers

    def __init__(self, topic, long long partition, long long offset, long long timestamp, key, value, tuple headers=()):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers

    def _fields(self):
        return (self.topic, self.partition, self.offset, self.timestamp, self.key, self.value, self.headers)

    def __eq__(self, other):
        if not hasattr(other, "headers") or not hasattr(other, "offset"):
            return NotImplemented
        return self._fields() == tuple(getattr(other, n) for n in ("topic", "partition", "offset", "timestamp", "key", "value", "headers"))

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None

    def __repr__(self):
        return (
            f"Record(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"timestamp={self.timestamp}, key={self.key!r}, value={self.value!r}, headers={self.headers!r})"
        )


cdef inline Record _make_record(object topic, long long partition, long long offset, long long timestamp,
                                object key, object value, tuple headers):
    cdef Record record = Record.__new__(Record)
    record.topic = topic
    record.partition = partition
    record.offset = offset
    record.timestamp = timestamp
    record.key = key
    record.value = value
    record.headers = headers
    return record


def decode_into(list out, data, int64_t base_offset, int64_t base_timestamp, Py_ssize_t count,
                int64_t log_append_time, topic, long long partition, int64_t min_offset, Py_ssize_t limit):
    cdef _Cursor cursor = _Cursor(memoryview(data).cast("B"))
    cdef int64_t length, end, timestamp, offset, header_count
    cdef Py_ssize_t added = 0
    cdef tuple headers
    for _ in range(count):
        if added >= limit:
            break
        length = cursor.varint()
        if length < 0 or length > cursor.size - cursor.at:
            raise RecordDecodeError(f"record of {length} bytes runs past the end of the records")
        end = cursor.at + length
        cursor.at += 1
        timestamp = base_timestamp + cursor.varint()
        offset = base_offset + cursor.varint()
        if offset < min_offset:
            cursor.at = end
            continue
        key = cursor.sized()
        value = cursor.sized()
        header_count = cursor.varint()
        if header_count:
            parsed = []
            for _ in range(header_count):
                header_key = cursor.sized()
                if header_key is None:
                    raise RecordDecodeError("null header key")
                parsed.append((header_key.decode(), cursor.sized()))
            headers = tuple(parsed)
        else:
            headers = ()
        if cursor.at != end:
            raise RecordDecodeError("record length does not match its fields")
        out.append(_make_record(topic, partition, offset, log_append_time if log_append_time >= 0 else timestamp,
                                key, value, headers))
        added += 1
    return added


cdef class ColumnBuilder:
    """Records decoded into columns (the twin of `_records_py.ColumnBuilder`), in C loops."""

    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t count
    cdef readonly array.array offsets
    cdef readonly array.array timestamps
    cdef readonly array.array key_starts
    cdef readonly array.array key_lengths
    cdef readonly array.array value_starts
    cdef readonly array.array value_lengths
    cdef readonly bytearray data
    cdef readonly Py_ssize_t data_size

    def __init__(self, Py_ssize_t capacity, Py_ssize_t data_capacity):
        self.capacity = capacity
        self.count = 0
        self.offsets = array.clone(_array.array("q"), capacity, zero=True)
        self.timestamps = array.clone(_array.array("q"), capacity, zero=True)
        self.key_starts = array.clone(_array.array("q"), capacity, zero=True)
        self.key_lengths = array.clone(_array.array("i"), capacity, zero=True)
        self.value_starts = array.clone(_array.array("q"), capacity, zero=True)
        self.value_lengths = array.clone(_array.array("i"), capacity, zero=True)
        self.data = bytearray(data_capacity)
        self.data_size = 0

    cdef inline void _place(self, const unsigned char[:] source, Py_ssize_t at, int64_t size,
                            int64_t* start, int* length) except *:
        if size < 0:
            start[0] = self.data_size
            length[0] = -1
            return
        if self.data_size + size > len(self.data):  # decompressed data outgrew the estimate: double
            self.data.extend(bytes(max(self.data_size + size - len(self.data), len(self.data))))
        cdef unsigned char* target = <unsigned char*>(<char*>self.data)
        if size:
            memcpy(target + self.data_size, &source[at], size)
        start[0] = self.data_size
        length[0] = <int>size
        self.data_size += size

    def add(self, data, int64_t base_offset, int64_t base_timestamp, Py_ssize_t count, int64_t log_append_time,
            int64_t min_offset):
        cdef const unsigned char[:] view = memoryview(data).cast("B")
        cdef _Cursor cursor = _Cursor(view)
        cdef int64_t length, end, timestamp, offset, key_size, value_size, header_count, header_size
        cdef Py_ssize_t added = 0, i
        cdef int64_t* offsets = <int64_t*>self.offsets.data.as_voidptr
        cdef int64_t* timestamps = <int64_t*>self.timestamps.data.as_voidptr
        cdef int64_t* key_starts = <int64_t*>self.key_starts.data.as_voidptr
        cdef int* key_lengths = <int*>self.key_lengths.data.as_voidptr
        cdef int64_t* value_starts = <int64_t*>self.value_starts.data.as_voidptr
        cdef int* value_lengths = <int*>self.value_lengths.data.as_voidptr
        for _ in range(count):
            if self.count >= self.capacity:
                break
            length = cursor.varint()
            if length < 0 or length > cursor.size - cursor.at:
                raise RecordDecodeError(f"record of {length} bytes runs past the end of the records")
            end = cursor.at + length
            cursor.at += 1
            timestamp = base_timestamp + cursor.varint()
            offset = base_offset + cursor.varint()
            if offset < min_offset:
                cursor.at = end
                continue
            i = self.count
            offsets[i] = offset
            timestamps[i] = log_append_time if log_append_time >= 0 else timestamp
            key_size = cursor.varint()
            if key_size > cursor.size - cursor.at:
                raise RecordDecodeError(f"field of {key_size} bytes runs past the end of the records")
            self._place(view, cursor.at, key_size, &key_starts[i], &key_lengths[i])
            if key_size > 0:
                cursor.at += key_size
            value_size = cursor.varint()
            if value_size > cursor.size - cursor.at:
                raise RecordDecodeError(f"field of {value_size} bytes runs past the end of the records")
            self._place(view, cursor.at, value_size, &value_starts[i], &value_lengths[i])
            if value_size > 0:
                cursor.at += value_size
            header_count = cursor.varint()
            for _ in range(header_count):
                header_size = cursor.varint()
                if header_size < 0:
                    raise RecordDecodeError("null header key")
                cursor.at += header_size
                header_size = cursor.varint()
                if header_size > 0:
                    cursor.at += header_size
            if cursor.at != end:
                raise RecordDecodeError("record length does not match its fields")
            self.count += 1
            added += 1
        return added


def murmur2(data):
    """Kafka's `Utils.murmur2`, as a signed 32-bit int (the twin of `_records_py.murmur2`)."""
    cdef const unsigned char[:] view = memoryview(data).cast("B")
    cdef Py_ssize_t length = view.shape[0], i, whole = length - length % 4
    cdef uint32_t m = 0x5BD1E995, h = 0x9747B28C ^ <uint32_t>length, k
    for i in range(0, whole, 4):
        k = view[i] | (<uint32_t>view[i + 1] << 8) | (<uint32_t>view[i + 2] << 16) | (<uint32_t>view[i + 3] << 24)
        k *= m
        k ^= k >> 24
        k *= m
        h = (h * m) ^ k
    tail = length % 4
    if tail == 3:
        h ^= <uint32_t>view[whole + 2] << 16
    if tail >= 2:
        h ^= <uint32_t>view[whole + 1] << 8
    if tail >= 1:
        h ^= view[whole]
        h *= m
    h ^= h >> 13
    h *= m
    h ^= h >> 15
    return <int>h
