"""Small real disks for the disk fault tests: a tmpfs of a few MiB mounted in a temp dir (root
only: CI runs as root; elsewhere the tests skip and say why), filled with a filler file until
the kernel answers ENOSPC, and freed again by deleting it. A tmpfs mounted with few inodes runs
out of files instead of bytes: what a full directory or inode table does on a disk file system.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

FILLER_CHUNK_BYTES = 64 * 1024


@contextmanager
def small_tmpfs(where: Path, size: str, inodes: int | None = None) -> Iterator[Path]:
    """A tmpfs of `size` (mount's syntax: "8m") at `where`, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes is not None else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"mount -t tmpfs failed: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=False)


def fill(disk: Path, name: str = "filler") -> Path:
    """Writes a filler file on `disk` until the kernel says ENOSPC; returns its path."""
    filler = disk / name
    chunk = b"\0" * FILLER_CHUNK_BYTES
    with open(filler, "wb", buffering=0) as out:
        while True:
            try:
                written = out.write(chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
                break
            if written is not None and written < len(chunk):  # the last partial write fit
                continue
    assert free_bytes(disk) == 0, f"{disk} still has {free_bytes(disk)} bytes free"
    return filler


def fill_inodes(disk: Path, leave: int = 0) -> list[Path]:
    """Creates empty files on `disk` until no inode is left, then deletes `leave` of them."""
    made: list[Path] = []
    while True:
        path = disk / f"inode-filler-{len(made)}"
        try:
            path.touch(exist_ok=False)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
            break
        made.append(path)
    for path in made[len(made) - leave :]:
        path.unlink()
    return made[: len(made) - leave]


def free_bytes(disk: Path) -> int:
    stats = os.statvfs(disk)
    return stats.f_bavail * stats.f_frsize
