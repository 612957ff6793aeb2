"""A private `redis-server` for tests: its own port, no persistence, stopped by the test.

Tests that restart Redis, or need one Redis per site, must not touch the machine's shared
instance, so they start their own here.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["RedisServer"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: install Debian's redis-server package")
        self._binary = binary
        self.workdir = workdir
        self.port = port or _free_port()
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> RedisServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        self._proc = await asyncio.create_subprocess_exec(
            self._binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir), "--protected-mode", "no",
            stdout=log, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        # Readiness probe: nothing pushes "ready", so poll PING with a short backoff.
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=1)
        delay = 0.01
        try:
            async with asyncio.timeout(15):
                while True:
                    assert self._proc is not None and self._proc.returncode is None, "redis-server exited"
                    try:
                        await client.ping()
                        return
                    except (RedisError, OSError):
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 0.2)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()
