"""A process appending with durability "fsync" is SIGKILLed 20 times at random points (every
other run through the asyncio API's joined appends, the others through the synchronous API's
appends from threads); after reopening, every append that returned is in the log once, at the
offsets it was told, in order, and nothing appears twice. (Small segments, so kills also land
around rolls and their producer-state snapshots.)"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import tidelog

ROOT = Path(__file__).parents[2]
KILLS = 20
READY_TIMEOUT_S = 30
ACK_FIELDS = 6  # "ack <writer> <n> <count> <first> <last>"


def parse_acks(line: str) -> list[tuple[int, int, int, int, int]]:
    """The acknowledgement on one line of the child's output; none on a line the kill cut short
    (its append returned, but the line does not say where it went)."""
    fields = line.split()
    if len(fields) != ACK_FIELDS or fields[0] != "ack":
        return []
    _, writer, n, count, first, last = fields
    return [(int(writer), int(n), int(count), int(first), int(last))]


def run_until_killed(data: Path, run: int, rng: random.Random) -> list[tuple[int, int, int, int, int]]:
    """Starts the writer, kills it after a random time once it appends; its acknowledgements."""
    child = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "embedded" / "crash_writer.py"),
            str(data),
            f"r{run}",
            str(run),
            "async" if run % 2 == 0 else "sync",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acks: list[tuple[int, int, int, int, int]] = []
    started = time.monotonic()
    line = child.stdout.readline()
    assert line.strip() == "ready", line
    kill_at = time.monotonic() + rng.uniform(0.05, 0.6)
    while time.monotonic() < kill_at:
        line = child.stdout.readline()
        if not line:
            break
        acks += parse_acks(line)
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=READY_TIMEOUT_S)
    for line in rest.splitlines():  # written before the kill: acknowledged too
        acks += parse_acks(line)
    assert time.monotonic() - started < READY_TIMEOUT_S * 2
    return acks


def test_every_returned_append_survives_sigkill_once_and_in_order(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = random.Random(2026)
    acknowledged: dict[int, bytes] = {}  # offset → the value's prefix it was told it got
    for run in range(KILLS):
        acks = run_until_killed(data, run, rng)
        assert acks, f"run {run} acknowledged nothing before the kill"
        for writer, n, count, first, last in acks:
            assert last - first + 1 == count
            for i in range(count):
                offset = first + i
                assert offset not in acknowledged, f"offset {offset} acknowledged twice"
                acknowledged[offset] = f"r{run}/{writer}/{n + i}".encode()
    with tidelog.open(data) as log:
        stored: dict[int, bytes] = {}
        seen: set[bytes] = set()
        offset = 0
        while True:
            records, offset = log.read_with_next("crash", 0, offset)
            if not records:
                break
            for record in records:
                assert record.value is not None
                prefix = record.value.rstrip(b".")
                assert prefix not in seen, f"{prefix!r} is in the log twice"
                seen.add(prefix)
                stored[record.offset] = prefix
    missing = {o: v for o, v in acknowledged.items() if stored.get(o) != v}
    assert not missing, f"{len(missing)} acknowledged record(s) lost or moved, e.g. {sorted(missing.items())[:3]}"
    for writer in range(8):  # each writer's records, in the order it wrote them
        for run in range(KILLS):
            mine = [
                int(v.split(b"/")[2]) for _, v in sorted(stored.items()) if v.startswith(f"r{run}/{writer}/".encode())
            ]
            assert mine == sorted(mine), (run, writer)
