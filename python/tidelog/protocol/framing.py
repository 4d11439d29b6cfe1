"""Kafka request and response headers (sans-IO).

A frame is a 4-byte size then the message. Request header v1: api_key int16, api_version int16,
correlation_id int32, client_id nullable int16-string; v2 (flexible requests) adds tagged fields.
Response header v0 is the correlation id; v1 (flexible responses, except ApiVersions) adds an
empty tagged-field section.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tidelog import limits

SIZE_PREFIX = struct.Struct(">i")
HEADER_FIXED = struct.Struct(">hhi")
EMPTY_TAGGED_FIELDS = b"\x00"


class FrameError(ValueError):
    """A frame that cannot be a Kafka request; the connection is closed."""


@dataclass(frozen=True, slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    # Where the body starts in the frame (after the header, and its tagged fields if flexible).
    body_offset: int


def read_uvarint(frame: bytes | memoryview, at: int) -> tuple[int, int]:
    """An unsigned varint at `at`: (value, next position)."""
    value = 0
    for shift in range(0, 35, 7):
        if at >= len(frame):
            raise FrameError("varint runs past the frame")
        byte = frame[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
    raise FrameError("varint longer than 5 bytes")


def skip_tagged_fields(frame: bytes | memoryview, at: int) -> int:
    count, at = read_uvarint(frame, at)
    if count > limits.TAGGED_FIELDS_MAX:
        raise FrameError(f"{count} tagged fields")
    for _ in range(count):
        _, at = read_uvarint(frame, at)
        size, at = read_uvarint(frame, at)
        at += size
        if at > len(frame):
            raise FrameError("tagged field runs past the frame")
    return at


def parse_request_header(frame: bytes, flexible: bool | None) -> RequestHeader:
    """Parses the header of `frame` (the bytes after the size prefix).

    `flexible` says whether this api/version uses header v2; `None` when the api/version is
    unknown, in which case only the fixed part and the client id are read.
    """
    if len(frame) < HEADER_FIXED.size + 2:
        raise FrameError(f"frame of {len(frame)} bytes is too short for a request header")
    api_key, api_version, correlation_id = HEADER_FIXED.unpack_from(frame, 0)
    (client_id_length,) = struct.unpack_from(">h", frame, HEADER_FIXED.size)
    at = HEADER_FIXED.size + 2
    client_id = None
    if client_id_length >= 0:
        if at + client_id_length > len(frame):
            raise FrameError("client id runs past the frame")
        client_id = frame[at : at + client_id_length].decode("utf-8", "replace")
        at += client_id_length
    elif client_id_length != -1:
        raise FrameError(f"client id length {client_id_length}")
    if flexible:
        at = skip_tagged_fields(frame, at)
    return RequestHeader(api_key, api_version, correlation_id, client_id, at)


def response_header(correlation_id: int, flexible: bool) -> bytes:
    header = struct.pack(">i", correlation_id)
    return header + EMPTY_TAGGED_FIELDS if flexible else header


def frame(parts_size: int) -> bytes:
    return SIZE_PREFIX.pack(parts_size)
