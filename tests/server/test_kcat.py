"""kcat (librdkafka 2.0 from Debian) against a real broker: metadata, every codec, offsets, groups."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.server.conftest import BrokerProcess
from tests.server.scenario import CODECS

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="needs kcat (apt-get install kcat)")
TIMEOUT_S = 30
RECORDS = 100


def kcat(broker: BrokerProcess, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["kcat", "-b", broker.bootstrap, *args], input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume_with_every_codec(broker: BrokerProcess, codec: str) -> None:
    topic = f"kcat-{codec}"
    lines = "".join(f"key-{i}\tvalue-{i}-{codec}\n" for i in range(RECORDS))
    kcat(broker, "-P", "-t", topic, "-p", "0", "-K", "\t", "-z", codec, "-H", f"codec={codec}", stdin=lines)
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%o|%k|%s|%h\n")
    got = out.splitlines()
    assert got == [f"{i}|key-{i}|value-{i}-{codec}|codec={codec}" for i in range(RECORDS)]


def test_metadata_and_offset_query(broker: BrokerProcess) -> None:
    kcat(broker, "-P", "-t", "kcat-meta", "-p", "0", stdin="".join(f"v{i}\n" for i in range(10)))
    metadata = kcat(broker, "-L", "-t", "kcat-meta")
    assert f"broker 1 at 127.0.0.1:{broker.port}" in metadata
    assert 'topic "kcat-meta" with 1 partitions' in metadata
    out = kcat(broker, "-C", "-t", "kcat-meta", "-o", "-3", "-e", "-f", "%o %s\n")
    assert out.splitlines() == ["7 v7", "8 v8", "9 v9"]


def test_balanced_consumer_group_commits_and_resumes(tmp_path: object) -> None:
    """kcat -G (librdkafka 2.0's group consumer): reads everything, commits on exit, and a second
    run in the same group starts where the first stopped."""
    from pathlib import Path

    from tests.server.conftest import free_port

    broker = BrokerProcess(Path(str(tmp_path)) / "data", free_port(), {"group.initial.rebalance.delay.ms": "0"}).start()
    try:
        kcat(broker, "-P", "-t", "kcat-group", "-p", "0", stdin="".join(f"first-{i}\n" for i in range(RECORDS)))
        group_args = (
            "-C",
            "-G",
            "kcat-readers",
            "-X",
            "auto.offset.reset=earliest",
            "-e",
            "-f",
            "%o %s\n",
            "kcat-group",
        )
        first = kcat(broker, *group_args)
        assert first.splitlines() == [f"{i} first-{i}" for i in range(RECORDS)]
        kcat(broker, "-P", "-t", "kcat-group", "-p", "0", stdin="".join(f"second-{i}\n" for i in range(10)))
        second = kcat(broker, *group_args)
        assert second.splitlines() == [f"{RECORDS + i} second-{i}" for i in range(10)]
    finally:
        broker.stop()
