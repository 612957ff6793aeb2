"""Drive real y-prosemirror editors (tests/js/prosemirror_driver.mjs) from asyncio tests.

One Node process hosts any number of editors, each a ProseMirror state with the Tiptap schema
and y-prosemirror's sync plugin over @hocuspocus/provider. Commands are JSON lines; each is
answered once done, and several may run at once (two editors typing concurrently)::

    async with ProsemirrorDriver() as pm:
        await pm.open("a", server.hocuspocus_url, "eng/page/<id>", token)
        await asyncio.gather(pm.script("a", "A", steps_a), pm.script("b", "B", steps_b))
        doc = await pm.converged(["a", "b"])   # ProseMirror JSON, once both agree
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from crdt.pages import Mark, Node

__all__ = ["DriverError", "ProsemirrorDriver", "from_prosemirror_json"]

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DRIVER_JS: Final = REPO_ROOT / "tests" / "js" / "prosemirror_driver.mjs"
_LINE_LIMIT: Final = 64 * 1024 * 1024


class DriverError(RuntimeError):
    """The driver answered `ok: false`, or died."""


class ProsemirrorDriver:
    def __init__(self, *, timeout: float = 60.0) -> None:
        self._timeout = timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stderr: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next = 0
        self.stderr_lines: list[str] = []

    async def __aenter__(self) -> ProsemirrorDriver:
        if not (DRIVER_JS.parent / "node_modules").is_dir():
            raise RuntimeError(f"run `npm ci` in {DRIVER_JS.parent} first")
        node = os.environ.get("NODE") or shutil.which("node") or "node"
        self._proc = await asyncio.create_subprocess_exec(
            node, str(DRIVER_JS), cwd=REPO_ROOT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=_LINE_LIMIT,
        )  # fmt: skip
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._reader = asyncio.create_task(self._read(self._proc.stdout))
        self._stderr = asyncio.create_task(self._read_stderr(self._proc.stderr))
        if await self.command("ping") != "pong":
            raise DriverError("the driver did not answer ping")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(DriverError, TimeoutError):
                await self.command("exit", timeout=10)
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        for task in (self._reader, self._stderr):
            if task is not None:
                await task

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            message = json.loads(line)
            future = self._pending.pop(message.get("id"), None)
            if future is None or future.done():
                continue
            if message.get("ok"):
                future.set_result(message.get("result"))
            else:
                future.set_exception(DriverError(message.get("error", "failed")))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DriverError(f"the driver exited\n{self.stderr_text()}"))

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.stderr_lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_lines[-80:])

    def uncaught_errors(self) -> list[str]:
        return [
            line
            for line in self.stderr_lines
            if "uncaught exception" in line or "unhandled rejection" in line
        ]

    async def command(self, cmd: str, *, timeout: float | None = None, **args: Any) -> Any:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._next += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = future
        proc.stdin.write((json.dumps({"id": self._next, "cmd": cmd, **args}) + "\n").encode())
        await proc.stdin.drain()
        return await asyncio.wait_for(future, timeout or self._timeout)

    async def open(self, cid: str, url: str, document: str, token: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.command("open", cid=cid, url=url, document=document, token=token)
        return result["doc"]  # type: ignore[no-any-return]

    async def script(self, cid: str, anchor: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = await self.command("script", cid=cid, anchor=anchor, steps=steps)
        return result["doc"]  # type: ignore[no-any-return]

    async def json(self, cid: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.command("json", cid=cid)
        return result

    async def converged(self, cids: list[str], timeout: float = 30.0) -> dict[str, Any]:
        """The document once every client has the same one and nothing unacknowledged (the
        driver waits on its documents' and providers' events)."""
        result: dict[str, Any] = await self.command(
            "converged", cids=cids, within=int(timeout * 1000), timeout=timeout + 5
        )
        return result["doc"]  # type: ignore[no-any-return]

    async def refused(self, cid: str, timeout: float = 30.0) -> str:
        """The reason the server gave when it refused `cid`'s document (waits for it)."""
        result: dict[str, Any] = await self.command(
            "refused", cid=cid, within=int(timeout * 1000), timeout=timeout + 5
        )
        return str(result["reason"])

    async def close(self, cid: str) -> None:
        await self.command("close", cid=cid)


def from_prosemirror_json(value: dict[str, Any]) -> Node:
    """A ProseMirror document (`doc.toJSON()`) as the server's `Node`, to compare structures."""
    if value.get("type") == "text":
        marks = tuple(
            Mark(m["type"], tuple(sorted((k, v) for k, v in (m.get("attrs") or {}).items() if v is not None)))
            for m in value.get("marks", [])
        )
        return Node.of_text(value.get("text", ""), marks)
    node = Node(value["type"], {k: v for k, v in (value.get("attrs") or {}).items() if v is not None})
    node.content = [from_prosemirror_json(child) for child in value.get("content", [])]
    return node
