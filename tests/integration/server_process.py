"""Start and stop a real Samen server process (``python -m server serve``) for integration tests.

Usage::

    async with SamenServer(tmp_path / "data", env={"SAMEN_SOMETHING": "1"}) as server:
        ... server.ws_url, server.hocuspocus_url, server.http_url ...
        await server.kill9()
        await server.restart()  # same port, same data dir

The process listens on 127.0.0.1 only. Its stdout and stderr go to ``log_path`` (by default
``<data_dir>/samen-server.log``, appended across restarts); ``log_text()`` reads it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

import httpx

__all__ = ["HOST", "SamenServer", "ServerStartError", "free_port"]

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
HOST: Final = "127.0.0.1"


class ServerStartError(RuntimeError):
    """The server exited early or did not answer /healthz in time."""


def free_port(host: str = HOST) -> int:
    """A TCP port that was free on ``host`` a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class SamenServer:
    """One Samen server process on 127.0.0.1; an async context manager (stops it on exit)."""

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
        cwd: Path = REPO_ROOT,
        startup_timeout: float = 30.0,
        stop_timeout: float = 15.0,
        tls_ca: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        # Authentication is required by default; the tests written before it connect
        # anonymously, so a server runs open (SAMEN_AUTH=off) unless a test says otherwise.
        self.env = {"SAMEN_AUTH": "off", **(env or {})}
        self.port = port if port is not None else free_port()
        self.extra_args = list(extra_args)
        self.log_path = log_path if log_path is not None else self.data_dir / "samen-server.log"
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        # A server given SAMEN_TLS_CERT/KEY speaks https/wss; `tls_ca` verifies its certificate.
        self.tls_ca = tls_ca
        self.scheme = "https" if tls_ca is not None else "http"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an httpx client checks this server's certificate with."""
        return ssl.create_default_context(cafile=self.tls_ca) if self.tls_ca is not None else True

    # -- addresses ------------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{self.scheme.replace('http', 'ws')}://{HOST}:{self.port}/ws"

    @property
    def hocuspocus_url(self) -> str:
        return f"{self.scheme.replace('http', 'ws')}://{HOST}:{self.port}/hocuspocus"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> SamenServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the process and return once ``GET /healthz`` answers 200."""
        if self.running:
            raise RuntimeError(f"server already running (pid {self.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.starts += 1
        with self.log_path.open("ab") as log_file:
            log_file.write(f"===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log_file.flush()
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(),
                cwd=self.cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # kill9() can take down the whole process group
            )
        try:
            await self._wait_healthy()
        except BaseException:
            await self.kill9()
            raise

    async def _wait_healthy(self) -> None:
        # The readiness probe is the one place that polls: nothing pushes "ready" to us. Between
        # attempts we wait on the process itself, so an early exit is noticed at once.
        proc = self._proc
        assert proc is not None
        url = f"{self.http_url}/healthz"
        delay = 0.02
        last_error = "no answer yet"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.startup_timeout
        async with httpx.AsyncClient(trust_env=False, timeout=2.0, verify=self.verify) as http:
            while True:
                if proc.returncode is not None:
                    raise ServerStartError(
                        f"server exited with code {proc.returncode} before it was ready\n"
                        f"--- server log (tail) ---\n{self.log_tail()}"
                    )
                try:
                    response = await http.get(url)
                except httpx.TransportError as e:
                    last_error = repr(e)
                else:
                    if response.status_code == 200:
                        return
                    last_error = f"HTTP {response.status_code}"
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise ServerStartError(
                        f"server did not answer 200 on {url} within {self.startup_timeout}s "
                        f"(last: {last_error})\n--- server log (tail) ---\n{self.log_tail()}"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), min(delay, remaining))
                delay = min(delay * 2, 0.25)

    async def stop(self) -> int | None:
        """SIGTERM, wait up to ``stop_timeout``, then SIGKILL. Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout)
            except TimeoutError:
                self._append_log(f"===== did not stop within {self.stop_timeout}s of SIGTERM; SIGKILL\n")
                return await self.kill9()
        return proc.returncode

    async def kill9(self) -> int | None:
        """SIGKILL the server (and anything in its process group) and wait for it."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
        return proc.returncode

    async def restart(self) -> None:
        """Start again on the same port and data dir (stopping it first if it still runs)."""
        if self.running:
            await self.stop()
        await self.start()

    def _append_log(self, text: str) -> None:
        with self.log_path.open("a", encoding="utf-8") as f:
            f.write(text)
