"""Fixtures of the sink tests: a tidelog broker, a real PostgreSQL server, and the two backends.

PostgreSQL comes from the distribution's packages (`make system-tools` installs them). It
refuses to run as root, so as root the fixture runs `initdb` and the server as the `postgres`
system user the package creates, on a temporary directory and a loopback port.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import BrokerProcess, free_port

POSTGRES_READY_TIMEOUT_S = 30
POSTGRES_STOP_TIMEOUT_S = 30
BACKENDS = ("sqlite", "postgres")

# The sink's output in the tests: no key on it, so a record written twice is seen twice.
OUTPUT_TABLE = 'CREATE TABLE output (value TEXT NOT NULL, topic TEXT NOT NULL, "partition" INTEGER NOT NULL, '
OUTPUT_TABLE += '"offset" BIGINT NOT NULL, writer TEXT NOT NULL)'


def postgres_bin_dir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("postgres")
    return Path(found).parent if found else None


@dataclass
class PostgresServer:
    port: int
    base: Path
    process: subprocess.Popen[bytes]
    _databases: Iterator[int] = itertools.count()

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database} sslmode=disable gssencmode=disable"

    def new_database(self) -> str:
        import psycopg

        name = f"sink_{next(self._databases)}"
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name}")
            connection.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)


def _as_postgres() -> dict[str, Any]:
    """Popen arguments that run a command as the postgres user when we are root."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (make system-tools installs it as root)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
    # Under /tmp, not pytest's tmp_path: the postgres user cannot enter root's 0700 directories.
    base = Path(tempfile.mkdtemp(prefix="tidelog-postgres-"))
    run_as = _as_postgres()
    if run_as:
        os.chown(base, run_as["user"], run_as["group"])
    data = base / "data"
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "-N"],
        check=True,
        stdout=subprocess.DEVNULL,
        **run_as,
    )
    port = free_port()
    log = open(base / "server.log", "wb")
    process = subprocess.Popen(
        [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(base),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=100",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        **run_as,
    )
    server = PostgresServer(port, base, process)
    deadline = time.monotonic() + POSTGRES_READY_TIMEOUT_S
    import psycopg

    while True:
        try:
            psycopg.connect(server.dsn(), connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"PostgreSQL did not start: {(base / 'server.log').read_text()}") from None
            time.sleep(0.1)
    yield server
    process.send_signal(signal.SIGINT)  # fast shutdown
    try:
        process.wait(POSTGRES_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
    shutil.rmtree(base, ignore_errors=True)


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
        server: PostgresServer = request.getfixturevalue("postgres")
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
