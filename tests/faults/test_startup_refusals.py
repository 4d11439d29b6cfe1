"""Data directories `tidelog serve` must refuse at start, with one line naming the path and why
(exit status 1): another broker's (`meta.properties` naming another node.id, as Kafka refuses),
one without a cluster id, one on a read-only mount, one that is a file, one on a full disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.disks import fill, small_tmpfs
from tests.server.conftest import BrokerProcess, free_port

REFUSAL_TIMEOUT_S = 30


def serve(data_dir: Path, *settings: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tidelog", "serve", "--data-dir", str(data_dir)]
    command += ["--listen", f"127.0.0.1:{free_port()}"]
    for setting in settings:
        command += ["--set", setting]
    return subprocess.run(command, capture_output=True, text=True, timeout=REFUSAL_TIMEOUT_S)


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The one refusal line; fails unless the start was refused with it."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("tidelog: refusing to start: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return lines[0]


def used_once(data_dir: Path, *settings: str) -> None:
    """Starts a broker on `data_dir` (it writes meta.properties and its logs) and stops it."""
    broker = BrokerProcess(data_dir, free_port(), dict(s.split("=", 1) for s in settings)).start()
    assert broker.stop() == 0


def meta_properties(data_dir: Path) -> dict[str, str]:
    lines = (data_dir / "meta.properties").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_another_brokers_data_directory_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    used_once(data_dir, "node.id=1")
    stored = meta_properties(data_dir)
    assert stored["node.id"] == "1" and stored["cluster.id"]
    line = refusal(serve(data_dir, "node.id=2"))
    assert str(data_dir / "meta.properties") in line
    assert "node.id=1" in line and "node.id=2" in line and stored["cluster.id"] in line
    assert meta_properties(data_dir) == stored  # untouched
    used_once(data_dir, "node.id=1")  # its own broker still starts


def test_a_meta_properties_without_node_id_is_adopted_and_one_without_cluster_id_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "meta.properties").write_text("version=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\n")
    used_once(data_dir, "node.id=3")  # a file written before tidelog kept node.id
    assert meta_properties(data_dir) == {"version": "1", "cluster.id": "AAAAAAAAAAAAAAAAAAAAAA", "node.id": "3"}
    (data_dir / "meta.properties").write_text("version=1\nnode.id=3\n")
    line = refusal(serve(data_dir, "node.id=3"))
    assert str(data_dir / "meta.properties") in line and "no cluster.id" in line


def test_a_data_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.write_text("not a directory\n")
    line = refusal(serve(data_dir))
    assert str(data_dir) in line and ("EEXIST" in line or "ENOTDIR" in line), line


def test_a_read_only_data_directory_is_refused(tmp_path: Path) -> None:
    """As root, permissions do not stop writes: the directory is a tmpfs remounted read-only."""
    with small_tmpfs(tmp_path / "disk", "8m") as disk:
        data_dir = disk / "data"
        used_once(data_dir)
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True)
        if remounted.returncode != 0:
            pytest.skip(f"remount read-only failed: {remounted.stderr.strip()}")
        line = refusal(serve(data_dir))
        assert str(data_dir) in line and "EROFS" in line, line


def test_a_full_data_directory_is_refused_at_start(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "8m") as disk:
        data_dir = disk / "data"
        used_once(data_dir)
        filler = fill(disk)
        line = refusal(serve(data_dir))
        assert str(data_dir) in line and "ENOSPC" in line, line
        filler.unlink()
        used_once(data_dir)
