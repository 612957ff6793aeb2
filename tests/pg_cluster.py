"""A private PostgreSQL cluster for the tests: `initdb` into a temporary directory, started
by `pg_ctl` on a free port, so the tests need no running system PostgreSQL and may stop,
kill and restart "their" server.

PostgreSQL refuses to run as root; under root (containers, CI) its commands run as the
`postgres` user and the directory belongs to that user. Every command is bounded by
`TIMEOUT`; `pg_ctl -w` is what waits for the server to be up or down.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType

import asyncpg

__all__ = ["PgCluster", "find_bindir"]

TIMEOUT = 60  # seconds, for any one initdb / pg_ctl call and for pg_ctl's own waiting
_SERVICE_USER = "postgres"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl: `pg_config --bindir`, else the newest
    /usr/lib/postgresql/<version>/bin (Debian's layout)."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=TIMEOUT)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    debian = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    candidates += sorted(debian, key=lambda p: int(p.parent.name), reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package "
        "`postgresql` (or put pg_config of a server installation on PATH)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgCluster:
    """One PostgreSQL server of our own. Use as a context manager, or `start()` and
    `destroy()`; `destroy()` stops the server and removes its directory."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self._as_service_user = os.geteuid() == 0
        # Under /tmp, which the postgres user can reach (a root-owned pytest tmp_path is not).
        self.base = Path(tempfile.mkdtemp(prefix="samen-pg-", dir="/tmp"))
        self.datadir = self.base / "data"
        self.socketdir = self.base / "socket"
        self.logfile = self.base / "postgres.log"
        self.socketdir.mkdir()
        if self._as_service_user:
            for path in (self.base, self.socketdir):
                shutil.chown(path, _SERVICE_USER, _SERVICE_USER)
        self.port = free_port()

    def __enter__(self) -> PgCluster:
        try:
            self.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()

    # -- server control (blocking: call through asyncio.to_thread from a running loop) --

    def start(self) -> None:
        if not (self.datadir / "PG_VERSION").exists():
            self._initdb()
        options = f"-p {self.port} -k {self.socketdir} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._pg_ctl("start", "-l", str(self.logfile), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """`mode`: smart, fast (roll back and disconnect clients) or immediate (like a crash)."""
        self._pg_ctl("stop", "-m", mode)

    def kill(self) -> None:
        """Stop without a shutdown checkpoint, like a crash; the next start recovers from WAL."""
        self.stop(mode="immediate")

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        # pg_ctl status: 0 running, 3 not running, 4 no data directory.
        return self._run("pg_ctl", "status", "-D", str(self.datadir), check=False) == 0

    def destroy(self) -> None:
        """Stop the server if it runs (also after a failed start) and remove the directory."""
        try:
            if self.is_running():
                self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    # -- databases --

    async def create_database(self, name: str) -> None:
        async with self._admin() as conn:
            await conn.execute(f'CREATE DATABASE "{_checked(name)}"')

    async def drop_database(self, name: str) -> None:
        async with self._admin() as conn:
            # WITH (FORCE) terminates the database's connections first (a test's pool may
            # still hold some); without it the DROP fails while they exist.
            await conn.execute(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)')

    @asynccontextmanager
    async def fresh_database(self) -> AsyncIterator[str]:
        """A new empty database for one test; yields its DSN, drops it afterwards."""
        name = f"samen_test_{uuid.uuid4().hex[:16]}"
        await self.create_database(name)
        try:
            yield self.dsn(name)
        finally:
            await self.drop_database(name)

    @asynccontextmanager
    async def _admin(self) -> AsyncIterator[asyncpg.Connection]:
        async with asyncio.timeout(TIMEOUT):
            conn = await asyncpg.connect(self.dsn("postgres"))
            try:
                yield conn
            finally:
                await conn.close()

    # -- commands --

    def _initdb(self) -> None:
        # Trust on 127.0.0.1 and the socket: the cluster lives only as long as the test run.
        # --no-sync: a crash during initdb only costs this run its cluster.
        options = ["--auth=trust", "-U", "postgres", "--encoding=UTF8", "--locale=C", "--no-sync"]
        self._run("initdb", "-D", str(self.datadir), *options, "--no-instructions")

    def _pg_ctl(self, action: str, *args: str) -> None:
        # -w: return only once the server is up (or down), waiting at most TIMEOUT seconds.
        self._run("pg_ctl", action, "-D", str(self.datadir), "-w", "-t", str(TIMEOUT), *args)

    def _run(self, program: str, *args: str, check: bool = True) -> int:
        command = [str(self.bindir / program), *args]
        if self._as_service_user:
            command = ["runuser", "-u", _SERVICE_USER, "--", *command]
        # pg_ctl's server writes to the log file (-l), not to our pipes, so this returns
        # as soon as pg_ctl does.
        result = subprocess.run(command, cwd=self.base, capture_output=True, text=True, timeout=TIMEOUT + 10)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                f"\n--- server log ---\n{self._log_tail()}"
            )
        return result.returncode

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _checked(name: str) -> str:
    if not _DB_NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name
