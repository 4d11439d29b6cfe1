"""The offset store: a sink's positions and ownership, kept in the user's own database.

One table (default `tidelog_offsets`) maps (group, topic, partition) to the next offset to read
and an owner token. Claiming a partition increments its token in the database and returns the
new token with the stored offset; every batch's transaction ends with a compare-and-set of the
row on (token, expected offset). A process that lost a partition (a paused or partitioned
zombie) holds an old token, so its next batch changes no row and is rolled back: the database,
not Kafka's group generation, decides who may write.

A second table (default `tidelog_dead_letters`) keeps the records the user's code rejected,
written in the same transaction as the batch they came in.

`OffsetStore` holds the SQL both backends share; `SQLiteOffsetStore` and `PostgresOffsetStore`
(sibling modules) supply the connection, the transaction statements and the dialect.
"""

from __future__ import annotations

import abc
import base64
import contextlib
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tidelog.sink.records import SinkRecord, TopicPartition

# A table prefix becomes part of SQL identifiers: letters, digits and underscores only.
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class Claim:
    """A partition taken by this process: its owner token and the stored next offset (None
    until a first batch is stored)."""

    token: int
    next_offset: int | None


class OffsetStore(abc.ABC):
    """The database side of a sink. Used from one thread (the sink's)."""

    # The DB-API placeholder of the driver ("?" or "%s") and the type of byte columns.
    placeholder = "?"
    bytes_type = "BLOB"
    # Whether the backend spells "equal, NULL included" as IS (SQLite) or IS NOT DISTINCT FROM.
    null_safe_equal = "IS"

    def __init__(self, group_id: str, table_prefix: str = "tidelog_") -> None:
        if not group_id:
            raise ValueError("an offset store needs a group id")
        if not _PREFIX.match(table_prefix):
            raise ValueError(f"table_prefix must be a SQL identifier prefix, not {table_prefix!r}")
        self.group_id = group_id
        self.offsets_table = f"{table_prefix}offsets"
        self.dead_letters_table = f"{table_prefix}dead_letters"

    # ---- what a backend provides ---------------------------------------------------------------

    @abc.abstractmethod
    def connect(self) -> None:
        """Opens the connection (again, after a transient error closed it)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def begin(self) -> Any:
        """Starts a transaction; returns the cursor the batch's statements run on."""

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None:
        """Ends the open transaction without its changes; never raises for a dead connection."""

    @abc.abstractmethod
    def is_transient(self, error: BaseException) -> bool:
        """Whether `error` says the database was unreachable or busy (retry the step), rather
        than that a statement was wrong (the user's code rejected a record)."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A transaction of its own: committed when the block ends, rolled back if it raises."""
        cursor = self.begin()
        try:
            yield cursor
            self.commit()
        except BaseException:
            self.rollback()
            raise

    # ---- schema --------------------------------------------------------------------------------

    def create_tables(self) -> None:
        """Creates both tables if they are missing (in their own transaction)."""
        if self.has_tables():
            return  # no write lock needed: a busy SQLite file would make a new process wait
        with self.transaction() as cursor:
            self.lock_schema(cursor)
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.offsets_table} ("
                ' group_id TEXT NOT NULL, topic TEXT NOT NULL, "partition" INTEGER NOT NULL,'
                " next_offset BIGINT, owner_token BIGINT NOT NULL,"
                ' PRIMARY KEY (group_id, topic, "partition"))'
            )
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.dead_letters_table} ("
                ' group_id TEXT NOT NULL, topic TEXT NOT NULL, "partition" INTEGER NOT NULL,'
                f' "offset" BIGINT NOT NULL, timestamp_ms BIGINT, key {self.bytes_type},'
                f" value {self.bytes_type}, headers TEXT NOT NULL, error TEXT NOT NULL,"
                ' failed_at_ms BIGINT NOT NULL, PRIMARY KEY (group_id, topic, "partition", "offset"))'
            )

    @abc.abstractmethod
    def has_tables(self) -> bool:
        """Whether both tables exist (read without taking a write lock)."""

    def lock_schema(self, cursor: Any) -> None:  # noqa: B027 - a hook: SQLite's BEGIN IMMEDIATE already is one
        """Serialises table creation between processes, if the transaction does not already."""

    # ---- ownership and positions ---------------------------------------------------------------

    def claim(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, Claim]:
        """Takes `partitions` in one transaction: each row's token goes up by one (a missing row
        is created with token 1 and no offset). Every earlier owner is fenced from then on."""
        p = self.placeholder
        statement = (
            f'INSERT INTO {self.offsets_table} (group_id, topic, "partition", next_offset, owner_token)'
            f" VALUES ({p}, {p}, {p}, NULL, 1)"
            f' ON CONFLICT (group_id, topic, "partition")'
            f" DO UPDATE SET owner_token = {self.offsets_table}.owner_token + 1"
            " RETURNING owner_token, next_offset"
        )
        claims: dict[TopicPartition, Claim] = {}
        with self.transaction() as cursor:
            for topic, partition in sorted(set(partitions)):  # one lock order for every claimer
                cursor.execute(statement, (self.group_id, topic, partition))
                token, next_offset = cursor.fetchone()
                claims[(topic, partition)] = Claim(int(token), None if next_offset is None else int(next_offset))
        return claims

    def advance(
        self, cursor: Any, partition: TopicPartition, token: int, expected: int | None, next_offset: int
    ) -> bool:
        """The compare-and-set that ends a batch: moves the stored offset from `expected` to
        `next_offset` if this process still owns the row with `token`. False: fenced."""
        p = self.placeholder
        cursor.execute(
            f"UPDATE {self.offsets_table} SET next_offset = {p}"
            f' WHERE group_id = {p} AND topic = {p} AND "partition" = {p}'
            f" AND owner_token = {p} AND next_offset {self.null_safe_equal} {p}",
            (next_offset, self.group_id, partition[0], partition[1], token, expected),
        )
        return bool(cursor.rowcount == 1)

    def read(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, Claim]:
        """The rows of `partitions` as they are now (in their own transaction); missing rows are
        left out. After a commit whose answer was lost, this tells whether it happened."""
        p = self.placeholder
        found: dict[TopicPartition, Claim] = {}
        with self.transaction() as cursor:
            for topic, partition in partitions:
                cursor.execute(
                    f"SELECT owner_token, next_offset FROM {self.offsets_table}"
                    f' WHERE group_id = {p} AND topic = {p} AND "partition" = {p}',
                    (self.group_id, topic, partition),
                )
                row = cursor.fetchone()
                if row is not None:
                    found[(topic, partition)] = Claim(int(row[0]), None if row[1] is None else int(row[1]))
        return found

    def positions(self) -> dict[TopicPartition, int | None]:
        """Every stored next offset of this group (for tools and tests)."""
        rows = self._select(
            f'SELECT topic, "partition", next_offset FROM {self.offsets_table} WHERE group_id = {self.placeholder}'
        )
        return {(str(t), int(p)): None if o is None else int(o) for t, p, o in rows}

    def _select(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of a query on this group (its one parameter), in a transaction of its own."""
        with self.transaction() as cursor:
            cursor.execute(sql, (self.group_id,))
            rows = list(cursor.fetchall())
        return rows

    # ---- dead letters and savepoints -----------------------------------------------------------

    def dead_letter(self, cursor: Any, record: SinkRecord, error: BaseException) -> None:
        """Keeps a rejected record with the reason, in the batch's transaction."""
        p = self.placeholder
        headers = json.dumps(
            [[name, None if value is None else base64.b64encode(value).decode()] for name, value in record.headers]
        )
        cursor.execute(
            f"INSERT INTO {self.dead_letters_table}"
            ' (group_id, topic, "partition", "offset", timestamp_ms, key, value, headers, error, failed_at_ms)'
            f" VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})",
            (
                self.group_id,
                record.topic,
                record.partition,
                record.offset,
                record.timestamp,
                record.key,
                record.value,
                headers,
                f"{type(error).__name__}: {error}",
                time.time_ns() // 1_000_000,
            ),
        )

    def dead_letters(self) -> list[tuple[str, int, int, bytes | None, str]]:
        """(topic, partition, offset, value, error) of every dead letter of this group."""
        rows = self._select(
            f'SELECT topic, "partition", "offset", value, error FROM {self.dead_letters_table}'
            f' WHERE group_id = {self.placeholder} ORDER BY topic, "partition", "offset"'
        )
        return [(str(t), int(p), int(o), None if v is None else bytes(v), str(e)) for t, p, o, v, e in rows]

    @staticmethod
    def savepoint(cursor: Any, name: str) -> None:
        cursor.execute(f"SAVEPOINT {name}")

    @staticmethod
    def release(cursor: Any, name: str) -> None:
        cursor.execute(f"RELEASE SAVEPOINT {name}")

    @staticmethod
    def rollback_to(cursor: Any, name: str) -> None:
        """Undoes what ran since the savepoint, which then goes too."""
        cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
        cursor.execute(f"RELEASE SAVEPOINT {name}")


def describe(claims: Mapping[TopicPartition, Claim]) -> str:
    return ", ".join(f"{t}-{p}@{c.next_offset} (token {c.token})" for (t, p), c in sorted(claims.items()))
