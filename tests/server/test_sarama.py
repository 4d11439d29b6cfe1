"""IBM/sarama, the most used Go client, against a real broker: a Go program over sarama from the
Go module proxy (`tests/clients/sarama/`) creates and describes a topic with its admin client,
produces with its idempotent producer in every codec, reads the offsets, consumes in consumer
groups with the range (two members) and sticky balancers, and lists, describes and deletes the
groups. It reports what it saw as JSON; this test checks every figure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.server.conftest import BrokerProcess

PROGRAM = Path(__file__).parents[1] / "clients" / "sarama"
BUILD_TIMEOUT_S = 600
RUN_TIMEOUT_S = 180
CODECS = ("gzip", "lz4", "none", "snappy", "zstd")
PER_CODEC = 20

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="needs Go")


@pytest.fixture(scope="module")
def sarama_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = tmp_path_factory.mktemp("sarama") / "sarama-check"
    build = subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=PROGRAM,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        env={**os.environ, "GOFLAGS": "-mod=readonly"},
    )
    assert build.returncode == 0, build.stderr
    return binary


def test_sarama_admin_producer_and_consumer_groups(sarama_check: Path, broker: BrokerProcess) -> None:
    run = subprocess.run(
        [str(sarama_check), broker.bootstrap, "sarama-topic"], capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    total = PER_CODEC * len(CODECS)
    assert seen["topic_listed"] and seen["partitions"] == 3
    assert seen["produced"] == {codec: PER_CODEC for codec in CODECS}
    assert sum(seen["newest"].values()) == total and set(seen["oldest"].values()) == {0}
    for group in ("sarama-range", "sarama-sticky"):
        assert seen["distinct"][group] == total  # every value, through whichever member held it
        assert seen["consumed"][group] >= total
        assert seen["committed"][group] == total  # the committed positions are the partitions' ends
    assert seen["groups"] == ["sarama-range", "sarama-sticky"]
    assert seen["groups_after_delete"] == ["sarama-sticky"]
