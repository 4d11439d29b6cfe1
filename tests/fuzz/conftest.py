"""Shared by the fuzz tests: the seed frames are drawn once per session (a few seconds)."""

from __future__ import annotations

import pytest

from tests.fuzz.frames import seed_frames


@pytest.fixture(scope="session")
def seeds() -> list[bytes]:
    return seed_frames(3)
