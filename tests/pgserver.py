"""A private PostgreSQL server for tests: Debian's binaries, a throw-away cluster, one database per test.

The server runs as the ``postgres`` system user (PostgreSQL refuses root) from a temporary folder,
listens on a free loopback port with password authentication, and is stopped at the end of the
session. ``new_database()`` creates an empty database and returns its DSN, so tests never share
tables. Tests that need it are skipped only when PostgreSQL is not installed (``scripts/setup``
installs it; CI always has it).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

PASSWORD = "cmlplan-test-password"
USER = "cmlplan"


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<N>/bin`` with initdb, or None when PostgreSQL is absent."""
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return None
    versions = sorted((p for p in root.iterdir() if (p / "bin" / "initdb").is_file()), key=lambda p: int(p.name))
    return versions[-1] / "bin" if versions else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgServer:
    """One running cluster; ``dsn(database)`` and ``new_database()`` for the tests that use it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="cmlplan-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        self.log = self.root / "server.log"

    def _run(self, *command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = list(command)
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check, cwd=self.root)

    def start(self) -> None:
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        password_file = self.root / "pw"
        password_file.write_text(PASSWORD + "\n")
        if self._as_postgres:
            os.chown(password_file, pwd.getpwnam("postgres").pw_uid, -1)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER, "--pwfile", str(password_file),
            "-A", "scram-sha-256", "-E", "UTF8", "--no-sync",
        )
        self.restart()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = self._run(str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), check=False)
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not start: {self.log.read_text(errors='replace')[-2000:]}")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """An empty database of its own; returns its DSN."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate`` is a crash, for fault tests); it can be started again."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        """Start the (initialised) cluster again, on the same port."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def close(self) -> None:
        self.stop("immediate")
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)
