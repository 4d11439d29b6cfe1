"""FetchResponse v4-v16, encoded by hand: record bytes stay in their segment files (sendfile)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tidelog.protocol.wire import Encoder, Sendable

VERSION_LOG_START_OFFSET = 5
VERSION_SESSIONS = 7
VERSION_PREFERRED_READ_REPLICA = 11
VERSION_FLEXIBLE = 12
VERSION_TOPIC_IDS = 13


@dataclass(slots=True)
class FetchedPartition:
    index: int
    error_code: int = 0
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    # (producer id, first offset) of aborted transactions; None sends a null array.
    aborted_transactions: list[tuple[int, int]] | None = None
    records: Sendable | None = None


@dataclass(slots=True)
class FetchedTopic:
    name: str
    topic_id: uuid.UUID
    partitions: list[FetchedPartition]


def encode_fetch_response(
    version: int, topics: list[FetchedTopic], error_code: int = 0, session_id: int = 0, throttle_time_ms: int = 0
) -> list[bytes | Sendable]:
    out = Encoder(version >= VERSION_FLEXIBLE)
    out.int32(throttle_time_ms)
    if version >= VERSION_SESSIONS:
        out.int16(error_code)
        out.int32(session_id)
    out.array_length(len(topics))
    for topic in topics:
        if version >= VERSION_TOPIC_IDS:
            out.raw(topic.topic_id.bytes)
        else:
            out.string(topic.name)
        out.array_length(len(topic.partitions))
        for p in topic.partitions:
            out.int32(p.index)
            out.int16(p.error_code)
            out.int64(p.high_watermark)
            out.int64(p.last_stable_offset)
            if version >= VERSION_LOG_START_OFFSET:
                out.int64(p.log_start_offset)
            aborted = p.aborted_transactions
            out.array_length(None if aborted is None else len(aborted))
            for producer_id, first_offset in aborted or ():
                out.int64(producer_id)
                out.int64(first_offset)
                out.tagged_fields()
            if version >= VERSION_PREFERRED_READ_REPLICA:
                out.int32(-1)
            out.records(p.records)
            out.tagged_fields()
        out.tagged_fields()
    out.tagged_fields()
    return out.finish()
