"""The PostgreSQL offset store (psycopg 3): one connection, READ COMMITTED transactions.

The compare-and-set is an UPDATE of the partition's row, so under READ COMMITTED it sees the
newest committed token (a claim made by another process while this batch ran makes it change
no row) and locks the row until the batch commits (a claim that comes during the commit waits,
then reads the new offset).

`idle_in_transaction_s` sets the server's idle_in_transaction_session_timeout on the session:
a process stopped inside a transaction (SIGSTOP, a long GC pause, a dead VM) loses its session,
so the locks its user's statements took do not stall the partition's next owner.
"""

from __future__ import annotations

from typing import Any

from tidelog.sink.store import OffsetStore

try:
    import psycopg
except ImportError as missing:  # pragma: no cover - an optional dependency
    raise ImportError("the PostgreSQL offset store needs psycopg 3: pip install 'tidelog[sink-postgres]'") from missing


class PostgresOffsetStore(OffsetStore):
    """Offsets in the PostgreSQL database `conninfo` names (a libpq connection string or URL)."""

    placeholder = "%s"
    bytes_type = "BYTEA"
    null_safe_equal = "IS NOT DISTINCT FROM"

    def __init__(
        self,
        conninfo: str,
        group_id: str,
        *,
        table_prefix: str = "tidelog_",
        idle_in_transaction_s: float | None = 60.0,
        connect_timeout_s: int = 10,
    ) -> None:
        super().__init__(group_id, table_prefix)
        self.conninfo = conninfo
        self.idle_in_transaction_s = idle_in_transaction_s
        self.connect_timeout_s = connect_timeout_s
        self.connection: psycopg.Connection[Any] | None = None
        self.connect()
        self.create_tables()

    def connect(self) -> None:
        self.close()
        connection = psycopg.connect(self.conninfo, autocommit=False, connect_timeout=self.connect_timeout_s)
        if self.idle_in_transaction_s is not None:
            milliseconds = int(self.idle_in_transaction_s * 1000)
            connection.execute(f"SET idle_in_transaction_session_timeout = {milliseconds}")
            connection.commit()
        self.connection = connection

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self.connection is None or self.connection.closed:
            self.connect()
        assert self.connection is not None
        return self.connection

    def has_tables(self) -> bool:
        connection = self._connection()
        found = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename IN (%s, %s)",
            (self.offsets_table, self.dead_letters_table),
        ).fetchone()
        connection.commit()
        return found is not None and found[0] == 2

    def begin(self) -> Any:
        connection = self._connection()
        if connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            connection.rollback()
        # psycopg opens the transaction with the first statement.
        return connection.cursor()

    def commit(self) -> None:
        self._connection().commit()

    def rollback(self) -> None:
        connection = self.connection
        if connection is None or connection.closed:
            return
        try:
            connection.rollback()
        except psycopg.Error:
            self.close()

    def lock_schema(self, cursor: Any) -> None:
        # CREATE TABLE IF NOT EXISTS is not safe in two sessions at once (the loser fails on
        # pg_type's unique index), so creators queue on a transaction-scoped advisory lock.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.offsets_table,))

    def is_transient(self, error: BaseException) -> bool:
        # OperationalError: the connection is gone or the server is shutting down, and also
        # serialization failures and deadlocks (TransactionRollback); all are worth a retry.
        return isinstance(error, psycopg.OperationalError)
