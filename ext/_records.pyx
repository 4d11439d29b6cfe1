# cython: language_level=3
"""Compiled twin of tidelog/protocol/_records_py.py: same functions, same results.

Decoding builds a tuple per record; in pure Python the varint loops dominate, here they are C.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy
from libc.stdint cimport int64_t, uint64_t

from tidelog.protocol._records_py import RecordDecodeError

cdef int VARINT_BYTES_MAX = 10


cdef inline int varint_size(int64_t value):
    cdef uint64_t zigzag = <uint64_t>((value << 1) ^ (value >> 63))
    cdef int size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


cdef inline Py_ssize_t write_varint(unsigned char* out, Py_ssize_t at, int64_t value):
    cdef uint64_t zigzag = <uint64_t>((value << 1) ^ (value >> 63))
    while zigzag >= 0x80:
        out[at] = <unsigned char>((zigzag & 0x7F) | 0x80)
        at += 1
        zigzag >>= 7
    out[at] = <unsigned char>zigzag
    return at + 1


cdef inline Py_ssize_t field_size(object data):
    """A key, value or header field's encoded size (length varint and bytes)."""
    if data is None:
        return 1  # varint -1
    cdef Py_ssize_t length = len(data)
    return varint_size(length) + length


cdef inline Py_ssize_t write_field(unsigned char* out, Py_ssize_t at, object data) except -1:
    if data is None:
        return write_varint(out, at, -1)
    cdef Py_ssize_t length
    cdef const unsigned char[:] view
    if type(data) is bytes:  # the usual case: no buffer view to take
        length = PyBytes_GET_SIZE(data)
        at = write_varint(out, at, length)
        memcpy(out + at, PyBytes_AS_STRING(data), length)
        return at + length
    view = data
    length = view.shape[0]
    at = write_varint(out, at, length)
    if length:
        memcpy(out + at, &view[0], length)
    return at + length


def plain_inputs(records, timestamp):
    cdef list out = []
    cdef tuple pair
    empty = ()
    for record in records:
        if type(record) is bytes:
            out.append((timestamp, None, record, empty))
        elif type(record) is tuple and len(<tuple>record) == 2:
            pair = <tuple>record
            key = pair[0]
            value = pair[1]
            if (key is None or type(key) is bytes) and (value is None or type(value) is bytes):
                out.append((timestamp, key, value, empty))
            else:
                return None
        else:
            return None
    return out


def encode_records(records, int64_t base_timestamp):
    """Two passes: the exact size first, then one buffer written in C (no per-byte calls)."""
    cdef Py_ssize_t count = len(records), i, total = 0, body, at = 0
    cdef list bodies = [0] * count
    cdef list header_keys = [None] * count
    cdef int64_t delta
    for i in range(count):
        timestamp, key, value, headers = records[i]
        delta = <int64_t>timestamp - base_timestamp
        body = 1 + varint_size(delta) + varint_size(i) + field_size(key) + field_size(value)
        body += varint_size(len(headers))
        if headers:
            encoded = [name.encode() for name, _ in headers]
            header_keys[i] = encoded
            for j in range(len(headers)):
                body += field_size(encoded[j]) + field_size(headers[j][1])
        bodies[i] = body
        total += varint_size(body) + body
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef unsigned char* buffer = <unsigned char*>PyBytes_AS_STRING(out)
    for i in range(count):
        timestamp, key, value, headers = records[i]
        at = write_varint(buffer, at, <Py_ssize_t>bodies[i])
        buffer[at] = 0  # attributes
        at += 1
        at = write_varint(buffer, at, <int64_t>timestamp - base_timestamp)
        at = write_varint(buffer, at, i)
        at = write_field(buffer, at, key)
        at = write_field(buffer, at, value)
        at = write_varint(buffer, at, len(headers))
        if headers:
            encoded = header_keys[i]
            for j in range(len(headers)):
                at = write_field(buffer, at, encoded[j])
                at = write_field(buffer, at, headers[j][1])
    assert at == total
    return out


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
    cdef Py_ssize_t _n
    cdef int64_t _h
    cdef _Cursor cursor = _Cursor(memoryview(data).cast("B"))
    cdef list records = []
    cdef int64_t length, end, timestamp, offset, header_count
    for _n in range(count):
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
        for _h in range(header_count):
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
from cpython.bytearray cimport (
    PyByteArray_AS_STRING,
    PyByteArray_FromStringAndSize,
    PyByteArray_GET_SIZE,
    PyByteArray_Resize,
)
from libc.stdint cimport int16_t, int32_t, uint32_t


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
    cdef Py_ssize_t _n
    cdef int64_t _h
    cdef _Cursor cursor = _Cursor(memoryview(data).cast("B"))
    cdef int64_t length, end, timestamp, offset, header_count
    cdef Py_ssize_t added = 0
    cdef tuple headers
    for _n in range(count):
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
            for _h in range(header_count):
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
        self.data = PyByteArray_FromStringAndSize(NULL, data_capacity)  # filled as records come
        self.data_size = 0

    cdef unsigned char* _reserve(self, int64_t size) except NULL:
        """Room for `size` more bytes in `data`: doubled when full (not zeroed; realloc'd)."""
        cdef Py_ssize_t have = PyByteArray_GET_SIZE(self.data)
        if self.data_size + size > have:
            PyByteArray_Resize(self.data, max(self.data_size + size, 2 * have))
        return <unsigned char*>PyByteArray_AS_STRING(self.data)

    cdef inline Py_ssize_t _place(self, const unsigned char* src, Py_ssize_t size, Py_ssize_t at, Py_ssize_t end,
                                  int64_t* start, int* length) except -1:
        """Copies the key or value at `at` (length varint, bytes) into `data`; returns where the
        next field starts."""
        cdef int64_t field = _varint(src, size, &at)
        if field > end - at:
            raise RecordDecodeError(f"field of {field} bytes runs past the end of the record")
        start[0] = self.data_size
        if field < 0:
            length[0] = -1
            return at
        cdef unsigned char* dst = self._reserve(field)
        memcpy(dst + self.data_size, src + at, field)
        length[0] = <int>field
        self.data_size += field
        return at + field

    def add(self, data, int64_t base_offset, int64_t base_timestamp, Py_ssize_t count, int64_t log_append_time,
            int64_t min_offset):
        cdef const unsigned char[:] view = memoryview(data).cast("B")
        cdef Py_ssize_t size = view.shape[0]
        if size == 0:
            return 0
        cdef const unsigned char* src = &view[0]
        cdef Py_ssize_t at = 0, end, added = 0, i, _n
        cdef int64_t _h
        cdef int64_t length, timestamp, offset, header_count, header_size
        cdef int64_t* offsets = <int64_t*>self.offsets.data.as_voidptr
        cdef int64_t* timestamps = <int64_t*>self.timestamps.data.as_voidptr
        cdef int64_t* key_starts = <int64_t*>self.key_starts.data.as_voidptr
        cdef int* key_lengths = <int*>self.key_lengths.data.as_voidptr
        cdef int64_t* value_starts = <int64_t*>self.value_starts.data.as_voidptr
        cdef int* value_lengths = <int*>self.value_lengths.data.as_voidptr
        for _n in range(count):
            if self.count >= self.capacity:
                break
            length = _varint(src, size, &at)
            if length < 0 or length > size - at:
                raise RecordDecodeError(f"record of {length} bytes runs past the end of the records")
            end = at + length
            at += 1  # attributes
            timestamp = base_timestamp + _varint(src, size, &at)
            offset = base_offset + _varint(src, size, &at)
            if offset < min_offset:
                at = end
                continue
            i = self.count
            offsets[i] = offset
            timestamps[i] = log_append_time if log_append_time >= 0 else timestamp
            at = self._place(src, size, at, end, &key_starts[i], &key_lengths[i])
            at = self._place(src, size, at, end, &value_starts[i], &value_lengths[i])
            header_count = _varint(src, size, &at)
            for _h in range(header_count):
                header_size = _varint(src, size, &at)
                if header_size < 0 or header_size > end - at:
                    raise RecordDecodeError("bad header key")
                at += header_size
                header_size = _varint(src, size, &at)
                if header_size > end - at:
                    raise RecordDecodeError("bad header value")
                if header_size > 0:
                    at += header_size
            if at != end:
                raise RecordDecodeError("record length does not match its fields")
            self.count += 1
            added += 1
        return added


cdef inline int64_t _varint(const unsigned char* data, Py_ssize_t size, Py_ssize_t* at) except? -1:
    """A zigzag varint at `at[0]` (advanced past it)."""
    cdef uint64_t value = 0
    cdef int shift = 0
    cdef unsigned char byte
    while shift < 7 * VARINT_BYTES_MAX:
        if at[0] >= size:
            raise RecordDecodeError("varint runs past the end of the records")
        byte = data[at[0]]
        at[0] += 1
        value |= (<uint64_t>(byte & 0x7F)) << shift
        if not byte & 0x80:
            return <int64_t>(value >> 1) ^ -(<int64_t>(value & 1))
        shift += 7
    raise RecordDecodeError("varint longer than 10 bytes")


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


cdef inline uint32_t _be32(const unsigned char* p):
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]


cdef inline int64_t _be64(const unsigned char* p):
    return <int64_t>((<uint64_t>_be32(p) << 32) | <uint64_t>_be32(p + 4))


def decode_batches(data, int64_t min_offset, Py_ssize_t limit, sink, topic, long long partition, crc, decompress):
    """The twin of `_records_py.decode_batches`: the batch walk in C, one Python call per batch
    for the CRC (and for decompression when a batch is compressed)."""
    cdef const unsigned char[:] view = memoryview(data).cast("B")
    cdef Py_ssize_t size = view.shape[0], at = 0, batch_size, added = 0, got
    if size == 0:
        return min_offset, 0
    cdef const unsigned char* p = &view[0]
    cdef int64_t base, base_ts, max_ts, last, next_offset = min_offset
    cdef int32_t length, last_delta, count
    cdef int16_t attributes
    cdef uint32_t stored_crc
    cdef bint to_list = isinstance(sink, list)
    cdef ColumnBuilder builder = None if to_list else sink
    mv = memoryview(data)
    while at + 61 <= size and added < limit:
        base = _be64(p + at)
        length = <int32_t>_be32(p + at + 8)
        batch_size = <Py_ssize_t>length + 12
        if batch_size < 61 or at + batch_size > size:
            break
        stored_crc = _be32(p + at + 17)
        attributes = <int16_t>((p[at + 21] << 8) | p[at + 22])
        last_delta = <int32_t>_be32(p + at + 23)
        base_ts = _be64(p + at + 27)
        max_ts = _be64(p + at + 35)
        count = <int32_t>_be32(p + at + 57)
        if <uint32_t>crc(mv[at + 21 : at + batch_size]) != stored_crc:
            raise RecordDecodeError(f"the batch at offset {base} fails its CRC-32C")
        if not attributes & 0x20:
            records = mv[at + 61 : at + batch_size]
            if attributes & 0x07:
                records = decompress(attributes & 0x07, records)
            if to_list:
                got = decode_into(sink, records, base, base_ts, count, max_ts if attributes & 0x08 else -1,
                                  topic, partition, min_offset, limit - added)
            else:
                got = builder.add(records, base, base_ts, count, max_ts if attributes & 0x08 else -1, min_offset)
            added += got
            if added >= limit or (not to_list and builder.count >= builder.capacity):
                last = sink[len(sink) - 1].offset if to_list else (<int64_t*>builder.offsets.data.as_voidptr)[builder.count - 1]
                return max(last + 1, next_offset), added
        next_offset = max(next_offset, base + last_delta + 1)
        at += batch_size
    return next_offset, added
