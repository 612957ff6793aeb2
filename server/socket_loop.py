"""The receive loop every client socket shares: frames in order, bad input → a clean close.

A frame is handled completely before the next is read (messages of one connection never
interleave). Whatever a client sends, the worst outcome is that its own socket is closed
with a code and a reason; the room and the other clients are unaffected.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket

from crdt.errors import CrdtError
from protocol.errors import ProtocolError, UnknownMessageType

from .close_codes import CloseCode
from .errors import RoomLoadError
from .metrics import Counters
from .sender import SendAccounting, SocketSender
from .settings import Settings

if TYPE_CHECKING:
    from .rooms import RoomManager

__all__ = ["ClientEndpoint", "ClientError"]

log = logging.getLogger(__name__)


class ClientError(Exception):
    """The client did something this server refuses; close with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


FrameHandler = Callable[[bytes], Awaitable[None]]


class ClientEndpoint:
    """What the client endpoints share: their collaborators, how a socket is named in logs
    and given its sender, and the receive loop."""

    kind = "client"

    def __init__(
        self, settings: Settings, rooms: RoomManager, counters: Counters, sends: SendAccounting | None = None
    ) -> None:
        self._settings = settings
        self._rooms = rooms
        self._counters = counters
        self._ids = itertools.count(1)
        self.sends = sends if sends is not None else SendAccounting(settings.send_budget)

    def _label(self, websocket: WebSocket) -> str:
        client = websocket.client
        return f"{self.kind}#{next(self._ids)} {client.host if client else '?'}"

    def _sender(self, websocket: WebSocket, label: str) -> SocketSender:
        return SocketSender(websocket, self.sends, label, self._counters)

    async def _serve_frames(
        self, websocket: WebSocket, sender: SocketSender, handle_frame: FrameHandler, label: str
    ) -> None:
        """Run the socket until the client leaves or is closed; returns when its writer is done."""
        async with asyncio.TaskGroup() as tasks:
            sender.bind(tasks)
            try:
                await self._receive_loop(websocket, sender, handle_frame, label)
            finally:
                if not sender.closing:
                    sender.finish()

    async def _receive_loop(
        self, websocket: WebSocket, sender: SocketSender, handle_frame: FrameHandler, label: str
    ) -> None:
        while not sender.closing:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                sender.finish()
                return
            data = message.get("bytes")
            if data is None:
                sender.refuse(CloseCode.UNSUPPORTED_DATA, "text frames are not supported; send binary")
                return
            # uvicorn's own limit has slack for site-link batches: the client limit is here.
            if len(data) > self._settings.max_message_size:
                sender.refuse(CloseCode.MESSAGE_TOO_BIG, "message too big")
                return
            try:
                await handle_frame(data)
            except UnknownMessageType as exc:
                sender.refuse(CloseCode.PROTOCOL_ERROR, exc.reason)
                return
            except (ProtocolError, CrdtError) as exc:
                sender.refuse(CloseCode.INVALID_PAYLOAD, exc.reason)
                return
            except ClientError as exc:
                sender.refuse(exc.code, exc.reason)
                return
            except RoomLoadError as exc:
                log.error("%s: %s", label, exc)
                sender.close(CloseCode.INTERNAL_ERROR, str(exc))
                return
            except Exception:
                log.exception("%s: unexpected error while handling a frame", label)
                sender.close(CloseCode.INTERNAL_ERROR, "internal error")
                return
