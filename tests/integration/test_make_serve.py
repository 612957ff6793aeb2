"""`make serve` (the README's first command) runs a server the y-websocket client can use,
after the README's first steps: an admin, a token and a space made with the CLI
(authentication is required by default; documents live in spaces)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from .server_process import REPO_ROOT, free_port
from .yjs_driver import YjsDriver, text_insert, wait_converged

pytestmark = pytest.mark.integration


async def wait_healthy(url: str, proc: asyncio.subprocess.Process) -> None:
    # A readiness probe: nothing pushes "ready", so this one wait polls, with backoff.
    async with httpx.AsyncClient(trust_env=False, timeout=2) as http, asyncio.timeout(120):
        delay = 0.05
        while True:
            assert proc.returncode is None, "make serve exited early"
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            try:
                await asyncio.wait_for(proc.wait(), delay)
            except TimeoutError:
                delay = min(delay * 2, 0.5)


async def first_admin_token(env: dict[str, str]) -> str:
    """The README's first steps, while the server runs: an admin, a space, a token."""
    samen = str(REPO_ROOT / ".venv" / "bin" / "samen")
    for args, stdin in (
        (["user", "add", "admin", "--site-role", "admin", "--password-stdin"], b"correct horse battery\n"),
        (["space", "create", "notes", "--title", "Notes"], b""),
        (["token", "create", "admin", "--expires", "1d"], b""),
    ):
        proc = await asyncio.create_subprocess_exec(
            samen, *args, cwd=REPO_ROOT, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
        assert proc.returncode == 0, err.decode()
    return out.decode().strip()


async def test_make_serve_runs_a_usable_server(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SAMEN_DATA_DIR": str(tmp_path / "data")}
    log = (tmp_path / "make-serve.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        "make", "--no-print-directory", "serve", f"PORT={port}",
        cwd=REPO_ROOT, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        await wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
        token = await first_admin_token(env)
        async with YjsDriver() as driver:
            url = f"ws://127.0.0.1:{port}/ws"
            params = {"token": token}
            a = await driver.connect("a", "y-websocket", url, ["notes/demo"], user="a", params=params)
            b = await driver.connect("b", "y-websocket", url, ["notes/demo"], user="b", params=params)
            await a.edit("notes/demo", [text_insert("hello from make serve")])
            content = await wait_converged([a, b], "notes/demo")
            assert content["text"]["t"] == "hello from make serve"
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        log.close()
    assert (tmp_path / "data" / "samen.sqlite3").exists()
