"""ProduceResponse v3-v11, encoded by hand (it answers every produce request)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tidelog.protocol.wire import Encoder

VERSION_LOG_APPEND_TIME = 2
VERSION_LOG_START_OFFSET = 5
VERSION_RECORD_ERRORS = 8
VERSION_FLEXIBLE = 9


@dataclass(slots=True)
class PartitionResult:
    index: int
    error_code: int = 0
    base_offset: int = -1
    log_append_time_ms: int = -1
    log_start_offset: int = -1
    error_message: str | None = None
    record_errors: list[tuple[int, str | None]] = field(default_factory=list)


def encode_produce_response(
    version: int, topics: list[tuple[str, list[PartitionResult]]], throttle_time_ms: int = 0
) -> bytes:
    flexible = version >= VERSION_FLEXIBLE
    out = Encoder(flexible)
    out.array_length(len(topics))
    for name, partitions in topics:
        out.string(name)
        out.array_length(len(partitions))
        for p in partitions:
            out.int32(p.index)
            out.int16(p.error_code)
            out.int64(p.base_offset)
            if version >= VERSION_LOG_APPEND_TIME:
                out.int64(p.log_append_time_ms)
            if version >= VERSION_LOG_START_OFFSET:
                out.int64(p.log_start_offset)
            if version >= VERSION_RECORD_ERRORS:
                out.array_length(len(p.record_errors))
                for batch_index, message in p.record_errors:
                    out.int32(batch_index)
                    out.string(message)
                    out.tagged_fields()
                out.string(p.error_message)
            out.tagged_fields()
        out.tagged_fields()
    out.int32(throttle_time_ms)
    out.tagged_fields()
    (body,) = out.finish()
    assert isinstance(body, bytes)
    return body
