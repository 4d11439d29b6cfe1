"""A throwaway PostgreSQL server from the distribution's packages, on a loopback port.

    import server as pg
    running = pg.start()                 # initdb in a new directory under /tmp, then postgres
    dsn = running.new_database()
    ...
    running.stop()                       # fast shutdown, directory removed

PostgreSQL refuses to run as root: as root, `initdb` and the server run as the `postgres`
system user the package creates. The directory is under /tmp, not a 0700 directory of root's,
so that user can enter it. Used by the sink tests (tests/sink) and bench/sink.py.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30


class Unavailable(RuntimeError):
    """No PostgreSQL to run here (not installed, or root without a postgres user)."""


def bin_dir() -> Path | None:
    """The newest installed server's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[4]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("postgres")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as() -> dict[str, Any]:
    """Popen arguments that run a command as the postgres user when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable("running as root and there is no postgres user to run PostgreSQL as") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@dataclass
class Server:
    port: int
    base: Path
    process: subprocess.Popen[bytes]
    _log: Any
    _databases: Any = field(default_factory=itertools.count)

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database} sslmode=disable gssencmode=disable"

    def new_database(self) -> str:
        """A new empty database; its connection string."""
        import psycopg

        name = f"db_{next(self._databases)}"
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name}")
            connection.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def log_text(self) -> str:
        return (self.base / "server.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        self._log.close()
        shutil.rmtree(self.base, ignore_errors=True)


def start(settings: dict[str, str] | None = None) -> Server:
    """initdb and start a server; returns once it accepts connections. Raises Unavailable."""
    import psycopg

    binaries = bin_dir()
    if binaries is None:
        raise Unavailable("PostgreSQL is not installed (make system-tools installs it as root)")
    run_as = _run_as()
    base = Path(tempfile.mkdtemp(prefix="tidelog-postgres-"))
    if run_as:
        os.chown(base, run_as["user"], run_as["group"])
    data = base / "data"
    command = [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
    subprocess.run([*command, "--locale=C", "-N"], check=True, stdout=subprocess.DEVNULL, **run_as)
    port = _free_port()
    options = {"listen_addresses": "127.0.0.1", "max_connections": "100", **(settings or {})}
    server_command = [str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base)]
    for key, value in options.items():
        server_command += ["-c", f"{key}={value}"]
    log = open(base / "server.log", "wb")
    process = subprocess.Popen(server_command, stdout=log, stderr=subprocess.STDOUT, **run_as)
    server = Server(port, base, process, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            psycopg.connect(server.dsn(), connect_timeout=2).close()
            return server
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                text = server.log_text()
                server.stop()
                raise RuntimeError(f"PostgreSQL did not start: {text}") from None
            time.sleep(0.1)
