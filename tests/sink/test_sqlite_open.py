"""Processes opening the same new SQLite file at once (sink processes started together): each
opens it, though SQLite refuses the switch to WAL at once while another process makes it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from tidelog.sink.sqlite import SQLiteOffsetStore

ROUNDS = 25
PROCESSES = 4


def open_once(path: str, barrier: Any, errors: Any) -> None:
    barrier.wait()
    try:
        SQLiteOffsetStore(path, "g").close()
        errors.put(None)
    except Exception as error:  # reported to the test
        errors.put(repr(error))


def test_processes_opening_a_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    failures: list[str] = []
    for round_ in range(ROUNDS):
        path = str(tmp_path / f"sink-{round_}.sqlite")
        barrier, errors = context.Barrier(PROCESSES), context.Queue()
        processes = [context.Process(target=open_once, args=(path, barrier, errors)) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        failures += [error for error in (errors.get(timeout=10) for _ in processes) if error is not None]
    assert not failures, failures[:3]
