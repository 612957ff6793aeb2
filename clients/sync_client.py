"""A Python Yjs client: keeps a pycrdt document in sync with a Samen (or any Yjs) server.

Speaks both wire protocols: y-websocket (`ws://HOST/ws/<name>`, one document per socket)
and Hocuspocus (`ws://HOST/hocuspocus`, with SyncStatus acknowledgements). Local edits to
`client.doc` are sent as they happen; remote updates are applied as they arrive.

    async with SyncClient("ws://127.0.0.1:8000/ws", "notes") as client:
        await client.wait_synced()
        client.doc.get("t", type=pycrdt.Text).insert(0, "hello")
        await client.wait_acknowledged()     # Hocuspocus only: durable on the server
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Literal

import pycrdt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from crdt.awareness import AwarenessTable
from protocol import hocuspocus, ywebsocket
from protocol.awareness import AwarenessEntry, encode_awareness_update
from protocol.hocuspocus import AuthToken, HocuspocusFrame, Ping, Pong, SyncStatus
from protocol.messages import AwarenessMessage, QueryAwareness, SyncStep1, SyncStep2, SyncUpdate

__all__ = ["SyncClient"]

Protocol = Literal["y-websocket", "hocuspocus"]
_REMOTE = object()  # transaction origin of updates that came from the server


class SyncClient:
    def __init__(
        self,
        url: str,
        document: str,
        *,
        protocol: Protocol = "y-websocket",
        token: str = "",
        max_size: int | None = 64 * 1024 * 1024,
    ) -> None:
        self.document = document
        self.protocol = protocol
        self.url = f"{url.rstrip('/')}/{document}" if protocol == "y-websocket" else url
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.client_id = self.doc.client_id
        self.synced = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.authenticated: str | None = None
        self.sent_updates = 0
        self.acknowledged = 0
        self.rejected = 0
        self.awareness = AwarenessTable()
        self._token = token
        self._max_size = max_size
        self._socket: ClientConnection | None = None
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._applying_remote = False
        self._changed = asyncio.Condition()
        self._awareness_clock = 0
        self._awareness_state: Any = None
        self._subscription = self.doc.observe(self._on_local_transaction)

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> SyncClient:
        self._socket = await connect(self.url, max_size=self._max_size, open_timeout=10)
        # The client owns its two tasks: close() cancels and awaits both.
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"sync-client reader {self.document}"),
            asyncio.create_task(self._write_loop(), name=f"sync-client writer {self.document}"),
        ]
        if self.protocol == "hocuspocus":
            self._send(AuthToken(self._token))
        self._send(SyncStep1(self.doc.get_state()))
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._socket is not None and self._awareness_state is not None:
            self.set_awareness(None)
        if self._socket is not None:
            await self._flush_outbox()
            await self._socket.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _flush_outbox(self) -> None:
        if not self.closed.is_set() and not self._outbox.empty():
            try:
                async with asyncio.timeout(5):
                    await self._outbox.join()
            except TimeoutError:
                pass

    # -- waiting ---------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds; re-checked after every message received."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)

    async def wait_synced(self, timeout: float = 10.0) -> None:
        await self.wait_for(self.synced.is_set, timeout)

    @property
    def unacknowledged(self) -> int:
        """Hocuspocus: updates (and the sync step 2) the server has not yet confirmed durable."""
        return self.sent_updates - self.acknowledged - self.rejected

    async def wait_acknowledged(self, timeout: float = 10.0) -> None:
        if self.protocol != "hocuspocus":
            raise RuntimeError("only the Hocuspocus protocol acknowledges updates")
        await self.wait_for(lambda: self.unacknowledged == 0, timeout)

    # -- presence --------------------------------------------------------------------

    def set_awareness(self, state: Any) -> None:
        self._awareness_clock += 1
        self._awareness_state = state
        entry = AwarenessEntry(
            self.client_id, self._awareness_clock, json.dumps(state, separators=(",", ":"))
        )
        self._send(AwarenessMessage(encode_awareness_update([entry])))

    def remote_states(self) -> dict[int, Any]:
        return {c: json.loads(s) for c, s in self.awareness.states.items() if c != self.client_id}

    # -- wire ------------------------------------------------------------------------

    def _send(self, message: Any) -> None:
        if self._socket is None or self.closed.is_set():
            return
        if self.protocol == "hocuspocus":
            frame = hocuspocus.encode_frame(self.document, message)
        else:
            frame = ywebsocket.encode(message)
        if isinstance(message, SyncStep2 | SyncUpdate):
            self.sent_updates += 1
        self._outbox.put_nowait(frame)  # never blocks the caller's edit

    async def _write_loop(self) -> None:
        assert self._socket is not None
        while True:
            frame = await self._outbox.get()
            try:
                await self._socket.send(frame)
            except ConnectionClosed:
                pass
            finally:
                self._outbox.task_done()

    def _on_local_transaction(self, event: pycrdt.TransactionEvent) -> None:
        if self._applying_remote:
            return
        self._send(SyncUpdate(event.update))

    def _apply_remote(self, update: bytes) -> None:
        self._applying_remote = True
        try:
            self.doc.apply_update(update)
        finally:
            self._applying_remote = False

    async def _read_loop(self) -> None:
        assert self._socket is not None
        try:
            async for frame in self._socket:
                if isinstance(frame, str):
                    continue
                self._handle(frame)
                async with self._changed:
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self._socket.close_code
            self.close_reason = self._socket.close_reason or ""
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()

    def _handle(self, frame: bytes) -> None:
        if self.protocol == "hocuspocus":
            decoded = hocuspocus.decode_frame(frame)
            if isinstance(decoded, Ping):
                self._outbox.put_nowait(hocuspocus.PONG_FRAME)
                return
            if isinstance(decoded, Pong) or not isinstance(decoded, HocuspocusFrame):
                return
            message: Any = decoded.message
        else:
            message = ywebsocket.decode(frame)
        if isinstance(message, SyncStep1):
            self._send(SyncStep2(self.doc.get_update(message.state_vector)))
        elif isinstance(message, SyncStep2):
            self._apply_remote(message.update)
            self.synced.set()
        elif isinstance(message, SyncUpdate):
            self._apply_remote(message.update)
        elif isinstance(message, AwarenessMessage):
            self.awareness.apply(message.update, None, now=time.monotonic())
        elif isinstance(message, QueryAwareness) and self._awareness_state is not None:
            self.set_awareness(self._awareness_state)
        elif isinstance(message, SyncStatus):
            if message.applied:
                self.acknowledged += 1
            else:
                self.rejected += 1
        elif isinstance(message, hocuspocus.Authenticated):
            self.authenticated = message.scope
