"""What the hostile-client tests share: hand-made frames, an observer that records every
presence entry the server relays, and reading the server's own accounting from /metrics."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from clients.sync_client import SyncClient
from protocol import hocuspocus, ywebsocket
from protocol.awareness import AwarenessEntry, decode_awareness_update, encode_awareness_update
from protocol.hocuspocus import AuthToken, HocuspocusFrame
from protocol.messages import AwarenessMessage, SyncStep1

from .server_process import SamenServer

__all__ = ["Observer", "awareness_frame", "eventually_metric", "metric", "metrics", "open_raw", "poll"]


def awareness_frame(protocol: str, *entries: tuple[int, int, str], key: str = "") -> bytes:
    """One awareness message, hand-made, for y-websocket or for document `key` over Hocuspocus."""
    update = encode_awareness_update([AwarenessEntry(c, k, s) for c, k, s in entries])
    if protocol == "y-websocket":
        return ywebsocket.encode(AwarenessMessage(update))
    return hocuspocus.encode_frame(key, AwarenessMessage(update))


async def open_raw(server: SamenServer, protocol: str, doc: str) -> ClientConnection:
    """A raw connection to `doc` that has introduced itself (Hocuspocus: token and SyncStep1)."""
    if protocol == "y-websocket":
        return await connect(f"{server.ws_url}/{doc}", max_size=None)
    ws = await connect(server.hocuspocus_url, max_size=None)
    await ws.send(hocuspocus.encode_frame(doc, AuthToken("token")))
    await ws.send(hocuspocus.encode_frame(doc, SyncStep1(b"\x00")))
    return ws


class Observer(SyncClient):
    """A SyncClient that also keeps every awareness entry the server sent it, in order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entries: list[AwarenessEntry] = []

    def _handle(self, frame: bytes) -> None:
        if self.protocol == "hocuspocus":
            decoded = hocuspocus.decode_frame(frame)
            message = decoded.message if isinstance(decoded, HocuspocusFrame) else None
        else:
            message = ywebsocket.decode(frame)
        if isinstance(message, AwarenessMessage):
            self.entries.extend(decode_awareness_update(message.update))
        super()._handle(frame)

    def seen(self, client: int) -> list[str]:
        """The states relayed for `client`, in order."""
        return [e.state_json for e in self.entries if e.client_id == client]

    def state_of(self, client: int) -> str | None:
        return self.awareness.states.get(client)


async def metrics(server: SamenServer) -> str:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        response = await http.get(f"{server.http_url}/metrics")
        response.raise_for_status()
        return response.text


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition `text` (0 if it is not there)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)$", re.MULTILINE)
    for found in pattern.finditer(text):
        if (found.group(1) or "") == wanted:
            return float(found.group(2))
    return 0.0


async def poll(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Re-check `check` until it holds: for conditions the server cannot push to a test."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


async def eventually_metric(
    server: SamenServer, name: str, at_least: float, timeout: float = 20.0, **labels: str
) -> float:
    """Poll /metrics until `name` reaches `at_least`; returns its value then."""
    value = 0.0

    async def reached() -> bool:
        nonlocal value
        value = metric(await metrics(server), name, **labels)
        return value >= at_least

    await poll(reached, timeout, f"{name}{labels} >= {at_least}")
    return value
