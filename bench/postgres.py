"""A throw-away PostgreSQL server on loopback, for the tests and the tracking benches: made, started, stopped here.

    from bench.postgres import ThrowawayPostgres
    with ThrowawayPostgres() as database:
        uri = database.create("mlflow")          # postgresql://postgres@127.0.0.1:PORT/mlflow

Debian's ``postgresql`` package provides the programs (``.ci/run`` and README say how to
install it); this module finds them under ``/usr/lib/postgresql/<version>/bin`` or on the
``PATH``. ``initdb`` makes a fresh cluster in a temporary folder (trust authentication,
loopback only, no fsync: nothing here needs to survive a power cut), ``pg_ctl`` starts it on
a free port, and it is stopped by the PID in its own ``postmaster.pid``, never by name. As
root (PostgreSQL refuses to run as root) the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.ports import free_port

PROGRAMS = ("initdb", "pg_ctl", "psql")
SERVICE_USER = "postgres"  # Debian's package creates it


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL programs here, or no user to run them as: one line saying how to get them."""


def postgres_bin() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: the newest Debian version, else the ``PATH``'s.

    Raises:
        PostgresUnavailable: they are not installed.
    """
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=str(Path(found).parent)):
        return Path(found).parent
    raise PostgresUnavailable(
        "PostgreSQL is not installed (no initdb): apt-get update && apt-get install -y postgresql"
    )


class ThrowawayPostgres:
    """One PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only; :meth:`stop` removes nothing,
    :meth:`close` stops it and removes the folder."""

    def __init__(self, port: int | None = None) -> None:
        self.bin = postgres_bin()
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="skipsweep-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.as_user = SERVICE_USER if os.geteuid() == 0 else None
        if self.as_user is not None:
            try:
                account = pwd.getpwnam(self.as_user)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root and there is no '{self.as_user}' user to run PostgreSQL as"
                ) from None
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        self.start()

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin / program), *args]
        return ["runuser", "-u", self.as_user, "--", *command] if self.as_user else command

    def _run(self, program: str, *args: str) -> str:
        done = subprocess.run(self._command(program, *args), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
        return done.stdout

    @property
    def pid(self) -> int | None:
        """The postmaster's PID, from its own ``postmaster.pid``; None when it is not running."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def start(self) -> None:
        """Start the server (waiting until it accepts connections)."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, timeout: float = 30) -> None:
        """Stop the server by its PID (a fast shutdown: connections are closed, nothing is lost)."""
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while self.pid is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pid is not None:
            os.kill(pid, signal.SIGKILL)

    def restart(self) -> None:
        """Stop, then start again on the same port and data."""
        self.stop()
        self.start()

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one SQL statement through ``psql``; its output."""
        psql = shutil.which("psql") or str(self.bin / "psql")
        done = subprocess.run(
            [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database, "-Atc", statement],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr.strip()}")
        return done.stdout

    def uri(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create(self, database: str) -> str:
        """A new, empty database; its SQLAlchemy URI (what ``mlflow server --backend-store-uri`` takes)."""
        self.sql(f'CREATE DATABASE "{database}"')
        return self.uri(database)

    def drop(self, database: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
