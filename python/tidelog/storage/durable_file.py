"""Small files that must be the old version or the new one, whole, after any crash.

One pattern, used for `topics.json`, `producer-ids.json`, `meta.properties` and producer-state
snapshots: write a temp file, fsync it, rename it over the target, fsync the directory (without
the last step the rename itself may be lost).
"""

from __future__ import annotations

import os
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def fsync_path(path: Path) -> None:
    """fsyncs a file or a directory by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory: Path) -> None:
    fsync_path(directory)


def write_atomically(path: Path, data: bytes | str, temp: Path | None = None) -> None:
    """Replaces `path` with `data` durably: temp file (`temp`, or `path` + ".tmp"), fsync,
    rename, directory fsync. Raises OSError with `path` as it was (unless the error came after
    the rename, from the directory fsync)."""
    temp = temp if temp is not None else path.with_name(path.name + TEMP_SUFFIX)
    payload = data.encode() if isinstance(data, str) else data
    try:
        with open(temp, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
    except OSError:  # a full disk, say: the old version stays, and the temp file goes
        temp.unlink(missing_ok=True)
        raise
    os.replace(temp, path)
    fsync_directory(path.parent)
