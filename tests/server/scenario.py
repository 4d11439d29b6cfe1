"""The records every client test produces and expects back, byte for byte."""

from __future__ import annotations

import time
from dataclasses import dataclass

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
RECORDS_PER_CODEC = 200


@dataclass(frozen=True)
class Sent:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


def records_for(codec: str, base_ms: int | None = None) -> list[Sent]:
    """Keys, values (some null, some large), headers and increasing timestamps, per codec."""
    base = base_ms if base_ms is not None else int(time.time() * 1000) - 60_000
    out = []
    for i in range(RECORDS_PER_CODEC):
        value = None if i % 29 == 0 else (f"{codec}-value-{i}-".encode() * (1 + i % 40))
        key = None if i % 17 == 0 and value is not None else f"{codec}-key-{i}".encode()
        headers = tuple((f"h{j}", f"{codec}-{i}-{j}".encode()) for j in range(i % 3))
        out.append(Sent(key, value, headers, base + i * 10))
    return out
