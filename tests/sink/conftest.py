"""Fixtures of the sink tests: a tidelog broker, a real PostgreSQL server, and the two backends.

PostgreSQL comes from the distribution's packages (`make system-tools` installs them), started
once per session by bench/postgres/server.py on a temporary directory and a loopback port (as
the `postgres` system user when we are root: the server refuses to run as root).
"""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.compat.conftest import kafka_broker, kafka_port  # noqa: F401  (fixtures: Apache Kafka 4.4 for one test here)
from tests.server.conftest import BrokerProcess, free_port

ROOT = Path(__file__).parents[2]

BACKENDS = ("sqlite", "postgres")

# The sink's output in the tests: no key on it, so a record written twice is seen twice.
OUTPUT_TABLE = 'CREATE TABLE output (value TEXT NOT NULL, topic TEXT NOT NULL, "partition" INTEGER NOT NULL, '
OUTPUT_TABLE += '"offset" BIGINT NOT NULL, writer TEXT NOT NULL)'


def load_postgres_launcher() -> Any:
    """bench/postgres/server.py (bench scripts use it too; a script cannot import tests)."""
    spec = importlib.util.spec_from_file_location("postgres_server", ROOT / "bench" / "postgres" / "server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    launcher = load_postgres_launcher()
    try:
        server = launcher.start()
    except launcher.Unavailable as missing:
        pytest.skip(str(missing))
    yield server
    server.stop()


@dataclass
class Backend:
    """One database the sink writes to: `spec` is what the sink app takes (--db)."""

    name: str
    spec: str
    placeholder: str

    @property
    def target(self) -> str:
        return self.spec.split(":", 1)[1]

    def connect(self) -> Any:
        if self.name == "sqlite":
            return sqlite3.connect(self.target, timeout=30)
        import psycopg

        return psycopg.connect(self.target)

    def store(self, group: str, **options: Any) -> Any:
        return open_store(self.spec, group, **options)

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        connection = self.connect()
        try:
            rows = list(connection.execute(sql.replace("?", self.placeholder), tuple(params)).fetchall())
            connection.commit()
            return rows
        finally:
            connection.close()

    def execute(self, sql: str) -> None:
        connection = self.connect()
        try:
            connection.execute(sql)
            connection.commit()
        finally:
            connection.close()

    def write_transaction_open(self) -> bool:
        """Whether another connection holds a transaction open that wrote: SQLite's write lock
        is taken (BEGIN IMMEDIATE is refused at once), or a PostgreSQL session with a
        transaction id (it wrote) sits idle inside its transaction."""
        if self.name == "sqlite":
            connection = sqlite3.connect(self.target, timeout=0, isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
                return False
            except sqlite3.OperationalError as error:
                if "locked" not in str(error):
                    raise
                return True
            finally:
                connection.close()
        (found,) = self.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'idle in transaction' AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
        )
        return bool(found[0] > 0)

    def values(self) -> Counter[str]:
        return Counter(value for (value,) in self.query("SELECT value FROM output"))

    def writers(self) -> Counter[str]:
        return Counter(writer for (writer,) in self.query("SELECT writer FROM output"))


def open_store(spec: str, group: str, **options: Any) -> Any:
    kind, target = spec.split(":", 1)
    if kind == "sqlite":
        from tidelog.sink import SQLiteOffsetStore

        return SQLiteOffsetStore(target, group, **options)
    from tidelog.sink import PostgresOffsetStore

    return PostgresOffsetStore(target, group, **options)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        chosen = Backend("sqlite", f"sqlite:{tmp_path / 'sink.db'}", "?")
    else:
        server = request.getfixturevalue("postgres")
        chosen = Backend("postgres", f"postgres:{server.new_database()}", "%s")
    chosen.execute(OUTPUT_TABLE)
    return chosen


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """tidelog with no initial rebalance delay (group tests would wait 3 s at each join)."""
    process = BrokerProcess(tmp_path / "data", free_port(), {"group.initial.rebalance.delay.ms": "0"}).start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


def assert_exactly_once(backend: Backend, expected: Iterable[str]) -> None:
    """Every expected value in the output once, and nothing else."""
    wanted = Counter(expected)
    got = backend.values()
    twice = sorted((v for v, n in got.items() if n > 1), key=lambda v: int(v) if v.isdigit() else 0)
    missing = sorted(set(wanted) - set(got), key=lambda v: int(v) if v.isdigit() else 0)
    extra = sorted(set(got) - set(wanted))
    assert not twice and not missing and not extra, (
        f"{len(twice)} written more than once {twice[:10]}, {len(missing)} missing {missing[:10]}, "
        f"{len(extra)} never sent {extra[:10]}"
    )
