"""Fuzzing the request decoding in process: valid frames for every API and version the broker
answers, then mutants of them, fed to a real `Connection`. Each must be decoded (and handed to
the handler) or close the connection; no exception may escape, no input may hang, and what
decoding allocates stays in proportion to the frame (tracemalloc, every 64th input).

Default run: a fixed, seeded budget. `TIDELOG_FUZZ_SECONDS=N` runs the loop N seconds instead
(`make fuzz`); `TIDELOG_FUZZ_SEED` picks another seed.
"""

from __future__ import annotations

import logging
import os
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.frames import API_VERSIONS, FrameTarget, env_seconds, mutation_loop

DEFAULT_MUTANTS = 40_000
REGRESSIONS = Path(__file__).parent / "regressions"


@pytest.fixture
def target(caplog: pytest.LogCaptureFixture) -> Iterator[FrameTarget]:
    caplog.set_level(logging.ERROR, logger="tidelog.server.connection")  # one warning per close
    frame_target = FrameTarget()
    yield frame_target
    frame_target.close()


def test_every_valid_frame_is_decoded(target: FrameTarget, seeds: list[bytes]) -> None:
    for frame in seeds:
        target.run(frame)
    assert target.outcomes.closed == 0
    assert set(target.outcomes.by_api) == {key for key, _ in API_VERSIONS}


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.bin")), ids=lambda p: p.stem)
def test_frames_that_once_failed(target: FrameTarget, path: Path) -> None:
    tracemalloc.start()
    try:
        target.run(path.read_bytes(), measure=True)
    finally:
        tracemalloc.stop()


def test_mutated_frames(target: FrameTarget, seeds: list[bytes]) -> None:
    seconds = env_seconds()
    count = None if seconds else DEFAULT_MUTANTS
    seed = int(os.environ.get("TIDELOG_FUZZ_SEED", "0"))
    tracemalloc.start()
    try:
        done = max(mutation_loop(target, seeds, count, seconds, seed))
    finally:
        tracemalloc.stop()
    print(f"fuzz request frames: {done} inputs, seed {seed}, outcomes {target.outcomes}")
    assert done >= (count or 1)
    # The mutants reach past the header into every API's body decoder, and are refused too.
    assert target.outcomes.decoded > done // 100 and target.outcomes.closed > done // 10
    assert len(target.outcomes.by_api) == len({key for key, _ in API_VERSIONS})


@settings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(API_VERSIONS), st.binary(max_size=300))
def test_arbitrary_bodies_behind_a_supported_header(target: FrameTarget, api: tuple[int, int], body: bytes) -> None:
    api_key, version = api
    target.run(struct.pack(">hhih", api_key, version, 1, -1) + body)
