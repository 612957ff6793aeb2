"""The y-websocket endpoint: `ws://HOST:PORT/ws/<document name>`, one document per socket.

Handshake (reference server): on accept the server sends SyncStep1 and, if any presence is
known, one awareness message with all of it; it answers every SyncStep1 with SyncStep2.
"""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket

from protocol import ywebsocket
from protocol.messages import AwarenessMessage, QueryAwareness, SyncStep1, SyncStep2, SyncUpdate

from .close_codes import CloseCode
from .errors import RoomLoadError
from .names import name_from_raw_path
from .room import Outgoing, Room
from .sender import SocketSender
from .socket_loop import ClientEndpoint, ClientError

__all__ = ["YWebsocketEndpoint"]

log = logging.getLogger(__name__)


class YWebsocketPeer:
    """One y-websocket socket attached to one room."""

    __slots__ = ("room", "sender")

    def __init__(self, sender: SocketSender) -> None:
        self.sender = sender
        self.room: Room | None = None

    def deliver(self, message: Outgoing) -> None:
        self.sender.send(message.ywebsocket_frame())

    def send(self, message: ywebsocket.YWebsocketMessage) -> None:
        self.sender.send(ywebsocket.encode(message))

    def greet(self, room: Room) -> None:
        self.send(SyncStep1(room.document.state_vector()))
        states = room.awareness.encode_all()
        if states is not None:
            self.send(AwarenessMessage(states))

    async def handle_frame(self, frame: bytes) -> None:
        room = self.room
        assert room is not None
        message = ywebsocket.decode(frame)
        if isinstance(message, SyncStep1):
            self.send(SyncStep2(room.document.diff(message.state_vector)))
        elif isinstance(message, SyncStep2 | SyncUpdate):
            room.apply_update(message.update, self)
        elif isinstance(message, AwarenessMessage):
            room.apply_awareness(message.update, self)
        elif isinstance(message, QueryAwareness):
            states = room.awareness.encode_all()
            if states is not None:
                self.send(AwarenessMessage(states))
        else:  # auth messages only ever go server → client
            raise ClientError(CloseCode.PROTOCOL_ERROR, "auth messages are sent by the server only")


class YWebsocketEndpoint(ClientEndpoint):
    kind = "ws"

    async def serve(self, websocket: WebSocket) -> None:
        label = self._label(websocket)
        await websocket.accept()
        try:
            name = name_from_raw_path(websocket.scope.get("raw_path") or websocket.url.path.encode(), b"/ws/")
        except ClientError as exc:
            log.warning("%s: closing with %d: %s", label, exc.code, exc.reason)
            await websocket.close(exc.code, exc.reason)
            return
        label = f"{label} {name!r}"
        sender = self._sender(websocket, label)
        peer = YWebsocketPeer(sender)
        try:
            room = await self._rooms.join(name, peer)
        except RoomLoadError as exc:
            log.error("%s: %s", label, exc)
            await websocket.close(CloseCode.INTERNAL_ERROR, "document could not be loaded")
            return
        self._counters.connections_ywebsocket += 1
        try:
            peer.room = room
            peer.greet(room)
            await self._serve_frames(websocket, sender, peer.handle_frame, label)
        finally:
            self._counters.connections_ywebsocket -= 1
            self._rooms.leave(room, peer)
