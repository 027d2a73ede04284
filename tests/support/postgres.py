"""A real PostgreSQL server for the tests: ``initdb`` into a temp dir, a unix socket there and a
free loopback TCP port, trust authentication, no fsync (a test box, not a crash test of the
disk). Started once per session (see tests/hq/conftest.py); each test gets its own database.

PostgreSQL refuses to run as root: when the suite runs as root the server runs as an
unprivileged user (``postgres`` when the Debian package created it, else ``nobody``) through
``runuser``, in a directory handed to that user. The binaries come from Debian's ``postgresql``
package (``make setup`` installs it); missing ones fail loudly, never skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.broker import free_port

__all__ = ["PostgresServer", "find_postgres_bin"]

_SUPERUSER = "storegw"


def find_postgres_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: the newest Debian cluster version, else
    ``pg_config --bindir``, else wherever ``initdb`` is on PATH."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if found.returncode == 0 and (Path(found.stdout.strip()) / "initdb").exists():
            return Path(found.stdout.strip())
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(initdb).resolve().parent
    raise RuntimeError(
        "PostgreSQL server binaries not found (initdb, pg_ctl): run `make setup`, which "
        "installs Debian's postgresql package, or `apt-get install postgresql`"
    )


def _server_user() -> str | None:
    """Who runs the server: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run as")


class PostgresServer:
    """One PostgreSQL cluster in a private temp dir; ``url(database)`` to connect."""

    def __init__(self) -> None:
        self.bin = find_postgres_bin()
        self.user = _server_user()
        self.directory = Path(tempfile.mkdtemp(prefix="storegw-pg-"))
        self.data = self.directory / "data"
        self.socket_dir = self.directory / "run"
        self.log = self.directory / "server.log"
        self.host = "127.0.0.1"
        self.port = free_port()
        self._databases = 0
        self._started = False

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=120, cwd=self.directory
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr}"
                f"{result.stdout}\n{self.server_log()}"
            )
        return result

    def server_log(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def init(self) -> None:
        self.socket_dir.mkdir()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            self.directory.chmod(0o700)
            for path in (self.directory, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            _SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections. A first start that finds
        its port taken (another program bound it since :func:`free_port`) moves to a new port;
        a start the busy machine let time out is tried again, up to three times in all."""
        for attempt in range(3):
            try:
                self._start_once()
            except RuntimeError:
                if attempt == 2:
                    raise
                self.stop("immediate")
                if not self._started and "could not bind" in self.server_log():
                    self.port = free_port()
                continue
            self._started = True
            return

    def _start_once(self) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses={self.host} "
            "-c fsync=off -c full_page_writes=off -c max_connections=60 "
            "-c shared_buffers=64MB"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``fast``: roll back sessions and shut down cleanly; ``immediate``: like a crash."""
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
            check=False,
        )  # fmt: skip

    def running(self) -> bool:
        status = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "status", check=False)
        return status.returncode == 0

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{_SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        self._databases += 1
        name = f"t{os.getpid()}_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)
