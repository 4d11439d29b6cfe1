"""Array lengths checked against the frame before kio decodes a request.

kio's native reader reserves room for as many elements as an array's length field claims
before it reads one: a compact array claiming 2^32 - 2 elements in an 18-byte frame makes it
ask for 32 GiB, and the failed allocation aborts the broker process. This walk reads the body
the way kio does (same schema, same encodings) but only to find the length fields, and refuses
an array that claims more elements than bytes remain in the frame (every element takes at least
one byte). So what kio reserves is bounded by the frame, and so by `socket.request.max.bytes`.
It refuses only frames that kio could not decode either.
"""

from __future__ import annotations

import dataclasses
import functools
import struct
from typing import Any

from kio.serial._introspect import EntityField, EntityTupleField, PrimitiveTupleField, classify_field, get_field_tag
from kio.serial.errors import DecodeError

from tidelog.protocol import framing

FIXED_SIZES = {
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "uint16": 2,
    "int32": 4,
    "uint32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "uint64": 8,
    "timedelta_i64": 8,
    "float64": 8,
    "uuid": 16,
}
LENGTH_PREFIXED = {"string", "bytes", "records"}

# (name, kind, kafka_type or None, entity class or None) per field, inline ones in order.
Plan = tuple[str, type, str | None, Any]


@functools.cache
def _plan(cls: Any) -> tuple[tuple[Plan, ...], dict[int, Plan]]:
    inline: list[Plan] = []
    tagged: dict[int, Plan] = {}
    for field in dataclasses.fields(cls):
        kind = classify_field(field)
        entry: Plan = (field.name, type(kind), field.metadata.get("kafka_type"), getattr(kind, "type_", None))
        tag = get_field_tag(field)
        if tag is None:
            inline.append(entry)
        else:
            tagged[int(tag)] = entry
    return tuple(inline), tagged


def _fail(detail: str) -> DecodeError:
    return DecodeError(detail)


def _uvarint(frame: bytes, at: int, end: int) -> tuple[int, int]:
    """framing's varint reader (`end` is always the frame's end), failing as kio would."""
    try:
        return framing.read_uvarint(frame, at)
    except framing.FrameError as error:
        raise _fail(str(error)) from None


def _int(frame: bytes, at: int, end: int, fmt: str) -> tuple[int, int]:
    size = struct.calcsize(fmt)
    if at + size > end:
        raise _fail("length runs past the frame")
    return struct.unpack_from(fmt, frame, at)[0], at + size


def _length(frame: bytes, at: int, end: int, flexible: bool, fmt: str) -> tuple[int, int]:
    """A length (-1: null): compact (varint, plus one) when flexible, else a fixed-size int."""
    if flexible:
        value, at = _uvarint(frame, at, end)
        return value - 1, at
    return _int(frame, at, end, fmt)


def _primitive(frame: bytes, at: int, end: int, kafka_type: str | None, flexible: bool) -> int:
    if kafka_type in FIXED_SIZES:
        at += FIXED_SIZES[kafka_type]
    elif kafka_type in LENGTH_PREFIXED:
        size, at = _length(frame, at, end, flexible, ">h" if kafka_type == "string" else ">i")
        at += max(size, 0)
    else:
        raise _fail(f"no length rule for kafka type {kafka_type}")
    if at > end:
        raise _fail(f"{kafka_type} runs past the frame")
    return at


def _field(frame: bytes, at: int, end: int, plan: Plan, flexible: bool) -> int:
    name, kind, kafka_type, entity = plan
    if kind is EntityField:
        return _entity(frame, at, end, entity)
    if kind is EntityTupleField or kind is PrimitiveTupleField:
        count, at = _length(frame, at, end, flexible, ">i")
        if count > end - at:
            raise _fail(f"array {name} claims {count} elements with {end - at} bytes left in the frame")
        for _ in range(max(count, 0)):
            if kind is EntityTupleField:
                at = _entity(frame, at, end, entity)
            else:
                at = _primitive(frame, at, end, kafka_type, flexible)
        return at
    return _primitive(frame, at, end, kafka_type, flexible)


def _entity(frame: bytes, at: int, end: int, cls: Any) -> int:
    flexible = bool(cls.__flexible__)
    inline, tagged = _plan(cls)
    for plan in inline:
        at = _field(frame, at, end, plan, flexible)
    if flexible:
        count, at = _uvarint(frame, at, end)
        for _ in range(count):
            tag, at = _uvarint(frame, at, end)
            size, at = _uvarint(frame, at, end)
            if at + size > end:
                raise _fail("tagged field runs past the frame")
            if tag in tagged:
                _field(frame, at, at + size, tagged[tag], flexible)
            at += size
    return at


def check_lengths(cls: Any, frame: bytes, body_offset: int) -> None:
    """Raises DecodeError if an array of the body claims more elements than the frame holds."""
    _entity(frame, body_offset, len(frame), cls)
