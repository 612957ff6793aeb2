"""The y-websocket endpoint: `ws://HOST:PORT/ws/<document name>`, one document per socket.

A framing adapter around `ClientSession`: access is decided before the room is joined
(refused: accept, then close 4401/4403 before any document byte, so y-websocket 3.1 stops
retrying); then, as the reference server does, the server sends SyncStep1 and, if any
presence is known, one awareness message with all of it, and answers every SyncStep1.
"""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket

from protocol import ywebsocket
from protocol.messages import AwarenessMessage, SyncStep1, SyncStep2

from .auth.credentials import credentials_from
from .close_codes import CloseCode
from .errors import ClientError, RoomLoadError
from .names import name_from_raw_path
from .room import Outgoing, Room
from .session import ClientSession, SessionMessage
from .socket_loop import ClientEndpoint, Outbox

__all__ = ["YWebsocketEndpoint"]

log = logging.getLogger(__name__)


class YWebsocketChannel:
    __slots__ = ("label", "sender")

    def __init__(self, sender: Outbox, label: str) -> None:
        self.sender = sender
        self.label = label

    def send(
        self, message: SyncStep1 | SyncStep2 | AwarenessMessage, coalesce_key: str | None = None
    ) -> None:
        self.sender.send(ywebsocket.encode(message), coalesce_key)

    def deliver(self, message: Outgoing) -> None:
        self.sender.send(message.ywebsocket_frame())

    def acknowledge(self, applied: bool) -> None:
        pass  # y-websocket has no acknowledgement; the (deferred) echo is one

    def resync(self, state_vector: bytes) -> None:
        # The client answers with what the server lacks; refusing that answer again is
        # silent (the session only resyncs after a refused live update, never a SyncStep2).
        self.send(SyncStep1(state_vector))

    def close(self, code: int, reason: str) -> None:
        self.sender.close(code, reason)


def _greet(channel: YWebsocketChannel, room: Room) -> None:
    channel.send(SyncStep1(room.document.state_vector()))
    states = room.awareness.encode_all()
    if states is not None:
        channel.send(AwarenessMessage(states))


def _decode(frame: bytes) -> SessionMessage:
    message = ywebsocket.decode(frame)
    if isinstance(message, ywebsocket.AuthPermissionDenied):
        raise ClientError(CloseCode.PROTOCOL_ERROR, "auth messages are sent by the server only")
    return message


class YWebsocketEndpoint(ClientEndpoint):
    kind = "ws"

    async def serve(self, websocket: WebSocket) -> None:
        label = self._label(websocket)
        try:
            name = name_from_raw_path(websocket.scope.get("raw_path") or websocket.url.path.encode(), b"/ws/")
        except ClientError as exc:
            log.warning("%s: closing with %d: %s", label, exc.code, exc.reason)
            await websocket.accept()
            await websocket.close(exc.code, exc.reason)
            return
        label = f"{label} {name!r}"
        credentials = credentials_from(websocket)
        access = await self._access(credentials, name)
        await websocket.accept()
        if access.refusal is not None:
            code, reason = access.refusal
            log.warning("%s: refused (%d): %s", label, code, reason)
            await websocket.close(code, reason)
            return
        sender = self._sender(websocket, label)
        channel = YWebsocketChannel(sender, label)
        session = ClientSession(name, access.principal, access.grant, channel, self._counters, credentials)
        try:
            room = await self._rooms.join(name, session)
        except RoomLoadError as exc:
            log.error("%s: %s", label, exc)
            await websocket.close(CloseCode.INTERNAL_ERROR, "document could not be loaded")
            return
        services = self._services
        self._counters.connections_ywebsocket += 1
        services.registry.add(session, access.epoch)
        services.hooks.connected(session)
        try:
            session.start(room, lambda r: _greet(channel, r))

            def handle_frame(frame: bytes) -> None:
                session.handle(_decode(frame))

            await self._serve_frames(websocket, sender, handle_frame, label)
        finally:
            self._counters.connections_ywebsocket -= 1
            services.registry.remove(session)
            self._rooms.leave(room, session)
            services.hooks.disconnected(session)
