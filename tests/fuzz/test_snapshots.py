"""Fuzzing producer-state snapshot loading: arbitrary bytes, and mutants of real snapshots
with their CRC fixed half the time (so the parser behind the checksum is reached). Loading
either returns producers that obey the snapshot's rules or raises SnapshotError: never another
exception, never a hang (it reads at most the bytes it was given)."""

from __future__ import annotations

import struct
from pathlib import Path

import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidelog import limits
from tidelog.storage.producer_state import CRC_START, ProducerStateManager, SnapshotError


def real_snapshot(producers: int) -> bytes:
    state = ProducerStateManager(Path("unused"))
    for pid in range(producers):
        for n in range(pid % 7):
            state.record(
                pid,
                1,
                n * 5,
                n * 5 + 4,
                last_offset=10 * pid + n,
                offset_delta=4,
                timestamp=n,
                log_append_time=n % 2 == 1,
            )
    return state.snapshot_bytes()


SNAPSHOTS = [real_snapshot(n) for n in (0, 1, 3, 8)]


def check(data: bytes) -> None:
    try:
        producers = ProducerStateManager.parse_snapshot(data)
    except SnapshotError:
        return
    for pid, entry in producers.items():
        assert pid >= 0 and entry.producer_id == pid
        assert len(entry.batches) <= limits.PRODUCER_BATCHES_KEPT
    # What loaded encodes back to a snapshot that loads the same.
    state = ProducerStateManager(Path("unused"))
    state.producers = producers
    again = ProducerStateManager.parse_snapshot(state.snapshot_bytes())
    assert {p: list(e.batches) for p, e in again.items()} == {p: list(e.batches) for p, e in producers.items()}


def fix_crc(data: bytes) -> bytes:
    if len(data) < CRC_START:
        return data
    return data[:2] + struct.pack(">I", crc32c.crc32c(data[CRC_START:])) + data[CRC_START:]


@settings(max_examples=3000, deadline=None, database=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)
    check(fix_crc(data))


@st.composite
def mutants(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SNAPSHOTS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.integers(0, 3))
        if action == 0:
            width = draw(st.sampled_from([1, 2, 4, 8]))
            data[at : at + width] = draw(st.binary(min_size=width, max_size=width))
        elif action == 1:
            data[at:at] = draw(st.binary(min_size=1, max_size=40))
        elif action == 2:
            del data[at : at + draw(st.integers(1, 40))]
        else:
            value = draw(st.sampled_from([0, 1, 5, 6, 2**31 - 1, 2**32 - 1, 2**63 - 1]))
            data[at : at + 4] = (value & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(data)


@settings(max_examples=3000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutants(), st.booleans())
def test_mutated_real_snapshots(data: bytes, crc_fixed: bool) -> None:
    check(fix_crc(data) if crc_fixed else data)
