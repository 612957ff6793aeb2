"""The Hocuspocus endpoint: `ws://HOST:PORT/hocuspocus`, many documents on one socket.

Every frame names its document; the socket keeps one `DocumentSession` per document key.
A session opens on the first frame for its key. Authentication is not enforced yet: a
token (any) is answered with Authenticated("read-write"); v2 providers without a token
send no auth message and get none back.

Handshake order (captured from the reference server): Authenticated, then all presence if
any, then the server's SyncStep1, then the answers to the client's queued messages.
SyncStatus acknowledges every client SyncStep2 and Update, and only once it is durable.
"""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket

from protocol import hocuspocus
from protocol.hocuspocus import (
    SCOPE_READ_WRITE,
    Authenticated,
    AuthToken,
    CloseDocument,
    HocuspocusMessage,
    Ping,
    Pong,
    Stateless,
    SyncStatus,
)
from protocol.messages import AwarenessMessage, QueryAwareness, SyncStep1, SyncStep2, SyncUpdate

from .close_codes import CloseCode
from .names import check_document_key
from .room import Outgoing, Room
from .rooms import RoomManager
from .sender import SocketSender
from .settings import Settings
from .socket_loop import ClientEndpoint, ClientError

__all__ = ["HocuspocusEndpoint"]

log = logging.getLogger(__name__)


class DocumentSession:
    """One document on one Hocuspocus socket: the room's peer for that socket."""

    __slots__ = ("key", "room", "sender")

    room: Room  # set right after the session joins its room

    def __init__(self, key: str, sender: SocketSender) -> None:
        self.key = key
        self.sender = sender

    def deliver(self, message: Outgoing) -> None:
        self.sender.send(message.hocuspocus_frame(self.key))

    def send(self, message: HocuspocusMessage) -> None:
        self.sender.send(hocuspocus.encode_frame(self.key, message))

    def greet(self) -> None:
        states = self.room.awareness.encode_all()
        if states is not None:
            self.send(AwarenessMessage(states))
        self.send(SyncStep1(self.room.document.state_vector()))

    def _ack(self) -> None:
        self.send(SyncStatus(True))

    def handle(self, message: HocuspocusMessage) -> None:
        room = self.room
        if isinstance(message, SyncStep1):
            self.send(SyncStep2(room.document.diff(message.state_vector)))
        elif isinstance(message, SyncUpdate | SyncStep2):
            # No authentication yet, so every session is read-write (read-only comes with auth).
            room.apply_update(message.update, self, on_durable=self._ack)
        elif isinstance(message, AwarenessMessage):
            room.apply_awareness(message.update, self)
        elif isinstance(message, QueryAwareness):
            states = room.awareness.encode_all()
            if states is not None:
                self.send(AwarenessMessage(states))
        elif isinstance(message, AuthToken):
            self.send(Authenticated(SCOPE_READ_WRITE))
        elif isinstance(message, Stateless):
            log.debug("stateless message on %r ignored (no hook installed)", self.key)
        else:
            raise ClientError(
                CloseCode.PROTOCOL_ERROR, f"{type(message).__name__} is sent by the server only"
            )


class HocuspocusSocket:
    def __init__(self, rooms: RoomManager, sender: SocketSender, settings: Settings) -> None:
        self._rooms = rooms
        self._sender = sender
        self._settings = settings
        self.sessions: dict[str, DocumentSession] = {}

    async def handle_frame(self, data: bytes) -> None:
        frame = hocuspocus.decode_frame(data)
        if isinstance(frame, Ping | Pong):
            return  # keepalive only; the server relies on WebSocket pings
        message = frame.message
        session = self.sessions.get(frame.key)
        if session is None:
            if isinstance(message, CloseDocument):
                return  # closing a document that is not open: nothing to do
            session = await self._open(frame.key)
            if isinstance(message, AuthToken):
                session.send(Authenticated(SCOPE_READ_WRITE))
                session.greet()
                return
            session.greet()
        if isinstance(message, CloseDocument):
            self._close_session(session)
            session.send(CloseDocument("provider_initiated"))
            return
        session.handle(message)

    async def _open(self, key: str) -> DocumentSession:
        name, _session = check_document_key(key)
        if len(self.sessions) >= self._settings.max_documents_per_socket:
            raise ClientError(CloseCode.POLICY_VIOLATION, "too many documents on one socket")
        session = DocumentSession(key, self._sender)
        session.room = await self._rooms.join(name, session)
        self.sessions[key] = session
        return session

    def _close_session(self, session: DocumentSession) -> None:
        del self.sessions[session.key]
        self._rooms.leave(session.room, session)

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            self._close_session(session)


class HocuspocusEndpoint(ClientEndpoint):
    kind = "hp"

    async def serve(self, websocket: WebSocket) -> None:
        label = self._label(websocket)
        await websocket.accept()
        sender = self._sender(websocket, label)
        socket = HocuspocusSocket(self._rooms, sender, self._settings)
        self._counters.connections_hocuspocus += 1
        try:
            await self._serve_frames(websocket, sender, socket.handle_frame, label)
        finally:
            self._counters.connections_hocuspocus -= 1
            socket.close_all()
