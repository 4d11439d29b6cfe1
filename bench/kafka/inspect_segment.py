#!/usr/bin/env python3
"""Print the batch headers of a Kafka .log segment and the entries of its
.index / .timeindex (stdlib only), to compare tidelog's files with Kafka's.

    python3 bench/kafka/inspect_segment.py DIR/00000000000000000000.log [-n 10]

The .index and .timeindex next to the .log are read too.  Offsets printed for
index entries are absolute (segment base offset + the stored relative offset).
"""

import argparse
import struct
from pathlib import Path

# record batch v2 header up to recordCount (61 bytes), big-endian
BATCH = struct.Struct(">qiiBIhiqqqhii")


def batches(path: Path):
    data = path.read_bytes()
    pos = 0
    while pos + 12 <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, pos)
        if pos + 12 + length > len(data) or length < BATCH.size - 12:
            break  # partial / trailing bytes
        (_, _, leader_epoch, magic, crc, attrs, last_delta, base_ts, max_ts, pid, pepoch, base_seq, count) = (
            BATCH.unpack_from(data, pos)
        )
        yield dict(
            position=pos,
            base_offset=base_offset,
            last_offset=base_offset + last_delta,
            size=12 + length,
            magic=magic,
            leader_epoch=leader_epoch,
            attributes=attrs,
            base_timestamp=base_ts,
            max_timestamp=max_ts,
            producer_id=pid,
            record_count=count,
        )
        pos += 12 + length


def index_entries(path: Path, base: int):
    data = path.read_bytes()
    for i in range(0, len(data) - len(data) % 8, 8):
        rel, position = struct.unpack_from(">ii", data, i)
        yield base + rel, position


def timeindex_entries(path: Path, base: int):
    data = path.read_bytes()
    for i in range(0, len(data) - len(data) % 12, 12):
        ts, rel = struct.unpack_from(">qi", data, i)
        yield ts, base + rel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("log", type=Path)
    ap.add_argument("-n", type=int, default=10, help="entries to show from each file (0 = all)")
    a = ap.parse_args()
    base = int(a.log.stem)
    cut = (lambda xs: xs[: a.n]) if a.n else (lambda xs: xs)
    bs = list(batches(a.log))
    print(f"{a.log}: {a.log.stat().st_size} bytes, {len(bs)} batches")
    for b in cut(bs):
        print(
            "  batch pos={position} base={base_offset} last={last_offset} size={size} "
            "count={record_count} baseTs={base_timestamp} maxTs={max_timestamp}".format(**b)
        )
    for suffix, reader, fmt in (
        (".index", index_entries, "  offset={} position={}"),
        (".timeindex", timeindex_entries, "  timestamp={} offset={}"),
    ):
        p = a.log.with_suffix(suffix)
        if p.exists():
            es = list(reader(p, base))
            print(f"{p}: {p.stat().st_size} bytes, {len(es)} entries, last={es[-1] if es else None}")
            for e in cut(es):
                print(fmt.format(*e))


if __name__ == "__main__":
    main()
