"""The SQLite offset store (standard library): WAL journal, explicit transactions.

Durability: `synchronous="FULL"` (the default) makes every batch's commit survive a power loss.
`"NORMAL"` in WAL mode may lose the last commits in a power loss (never in a process crash), but
it cannot break exactly-once: a lost commit loses the batch's output and its stored offset
together, and the sink reads those records again from Kafka. Only effects outside the database
(a mail sent from the user's code) are not covered by either setting.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from tidelog import limits
from tidelog.sink.store import OffsetStore

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")


class SQLiteOffsetStore(OffsetStore):
    """Offsets in the SQLite file at `path`, beside the user's tables. `connection` is the
    store's own connection: the cursor the sink hands to the user's code belongs to it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        group_id: str,
        *,
        synchronous: str = "FULL",
        table_prefix: str = "tidelog_",
        busy_timeout_s: float = limits.SINK_SQLITE_BUSY_TIMEOUT_S,
    ) -> None:
        super().__init__(group_id, table_prefix)
        if synchronous.upper() not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_LEVELS}, not {synchronous!r}")
        self.path = os.fspath(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout_s = busy_timeout_s
        self.connection: sqlite3.Connection | None = None
        self.connect()
        self.create_tables()

    def connect(self) -> None:
        self.close()
        # isolation_level=None: the module issues no BEGIN of its own; this class does.
        connection = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        self._set_wal(connection)
        connection.execute(f"PRAGMA synchronous={self.synchronous}")
        self.connection = connection

    def _set_wal(self, connection: sqlite3.Connection) -> None:
        """Switches a new file to WAL. Two processes opening the same new file at once: the
        switch may be refused "database is locked" at once (SQLite calls no busy handler for
        it), so it is tried again until the busy timeout."""
        deadline = time.monotonic() + self.busy_timeout_s
        delay = limits.SINK_STORE_BACKOFF_S
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, limits.SINK_STORE_BACKOFF_MAX_S)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _connection(self) -> sqlite3.Connection:
        if self.connection is None:
            self.connect()
        assert self.connection is not None
        return self.connection

    def has_tables(self) -> bool:
        found = self._connection().execute(  # autocommit: a read, no lock held after it
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
            (self.offsets_table, self.dead_letters_table),
        )
        return bool(found.fetchone()[0] == 2)

    def begin(self) -> Any:
        connection = self._connection()
        if connection.in_transaction:  # left open by an interrupted step
            connection.execute("ROLLBACK")
        # IMMEDIATE: the write lock now, so two claimers or writers queue on busy_timeout
        # instead of failing at their first write with SQLITE_BUSY.
        connection.execute("BEGIN IMMEDIATE")
        return connection.cursor()

    def commit(self) -> None:
        self._connection().execute("COMMIT")

    def rollback(self) -> None:
        connection = self.connection
        if connection is not None and connection.in_transaction:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                self.close()

    def is_transient(self, error: BaseException) -> bool:
        # Only "busy" is: every other OperationalError (no such table, syntax) is the statement's.
        return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)
