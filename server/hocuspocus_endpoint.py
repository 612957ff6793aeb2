"""The Hocuspocus endpoint: `ws://HOST:PORT/hocuspocus`, many documents on one socket.

Every frame names its document; the socket keeps one `ClientSession` per document key.
A key is authenticated before its room is joined: its frames wait in a bounded queue while
the authenticator and authorizer answer (in a task of the socket, so other keys go on);
the first frame being the provider's Auth message (v3/v4 always send one; v2 only with a
token). Refused: PermissionDenied for that key, and the socket's other documents go on.

Handshake order (captured from the reference server): Authenticated, then all presence if
any, then the server's SyncStep1, then the answers to the client's queued messages.
SyncStatus acknowledges every client SyncStep2 and Update, and only once it is durable.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field, replace

from starlette.websockets import WebSocket

from protocol import hocuspocus
from protocol.hocuspocus import (
    SCOPE_READ_ONLY,
    SCOPE_READ_WRITE,
    Authenticated,
    AuthToken,
    CloseDocument,
    HocuspocusMessage,
    PermissionDenied,
    Ping,
    Pong,
    Stateless,
    SyncStatus,
)
from protocol.messages import AwarenessMessage, QueryAwareness, SyncStep1, SyncStep2, SyncUpdate

from .auth.credentials import credentials_from
from .auth.ports import Credentials, Grant
from .close_codes import CloseCode
from .errors import ClientError, RoomLoadError
from .names import check_document_key
from .room import Outgoing, Room
from .session import ClientSession
from .socket_loop import ClientEndpoint, EndpointServices, Outbox, check_access, guarded

__all__ = ["HocuspocusEndpoint"]

log = logging.getLogger(__name__)

# Hocuspocus v4's own caps on what waits for authentication (beyond them: close 4205).
_PENDING_MESSAGES = 1000
_PENDING_BYTES = 5 * 1024 * 1024
_PENDING_KEYS = 100


class HocuspocusChannel:
    __slots__ = ("key", "label", "sender", "socket")

    def __init__(self, socket: HocuspocusSocket, key: str, label: str) -> None:
        self.socket = socket
        self.sender = socket.sender
        self.key = key
        self.label = label

    def send(
        self, message: SyncStep1 | SyncStep2 | AwarenessMessage, coalesce_key: str | None = None
    ) -> None:
        key = None if coalesce_key is None else (self.key, coalesce_key)  # one socket, many documents
        self.sender.send(hocuspocus.encode_frame(self.key, message), key)

    def send_message(self, message: HocuspocusMessage) -> None:
        self.sender.send(hocuspocus.encode_frame(self.key, message))

    def deliver(self, message: Outgoing) -> None:
        self.sender.send(message.hocuspocus_frame(self.key))

    def acknowledge(self, applied: bool) -> None:
        self.send_message(SyncStatus(applied))

    def resync(self, state_vector: bytes) -> None:
        pass  # the provider re-syncs on its own after SyncStatus false

    def close(self, code: int, reason: str) -> None:
        """Access refused or revoked: that document only (PermissionDenied). Anything else
        (a client cut off, too slow): the whole socket, so the provider resyncs."""
        if code in (CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN):
            self.socket.close_key(self.key)
            self.send_message(PermissionDenied(reason))
        else:
            self.sender.close(code, reason)


@dataclass(slots=True)
class _Pending:
    """A key waiting for the authorizer, and the frames that arrived meanwhile."""

    messages: list[HocuspocusMessage] = field(default_factory=list)
    size: int = 0
    task: asyncio.Task[None] | None = None


def _greet(channel: HocuspocusChannel, room: Room) -> None:
    states = room.awareness.encode_all()
    if states is not None:
        channel.send(AwarenessMessage(states))
    channel.send(SyncStep1(room.document.state_vector()))


def _message_size(message: HocuspocusMessage) -> int:
    if isinstance(message, SyncStep2 | SyncUpdate | AwarenessMessage):
        return len(message.update)
    if isinstance(message, SyncStep1):
        return len(message.state_vector)
    return 16


def _scope(grant: Grant) -> str:
    return SCOPE_READ_WRITE if grant >= Grant.WRITE else SCOPE_READ_ONLY


class HocuspocusSocket:
    def __init__(
        self,
        services: EndpointServices,
        sender: Outbox,
        credentials: Credentials,
        label: str,
        tasks: asyncio.TaskGroup,
    ) -> None:
        self._services = services
        self.sender = sender
        self._credentials = credentials
        self._label = label
        self._tasks = tasks
        self.sessions: dict[str, ClientSession] = {}
        self._pending: dict[str, _Pending] = {}
        # Keys refused on this socket: their frames are dropped until the provider sends a
        # new Auth message (a v4 provider retries that way), so a refused client costs the
        # authorizer nothing per frame and keeps its first, true reason.
        self._refused: set[str] = set()
        self._closed = False

    def handle_frame(self, data: bytes) -> None:
        frame = hocuspocus.decode_frame(data)
        if isinstance(frame, Ping | Pong):
            return  # keepalive only; the server relies on WebSocket pings
        key, message = frame.key, frame.message
        session = self.sessions.get(key)
        if session is not None:
            self._dispatch(key, session, message)
            return
        pending = self._pending.get(key)
        if pending is not None:
            self._queue(pending, message)
            return
        if isinstance(message, CloseDocument):
            self._refused.discard(key)
            return  # closing a document that is not open: nothing to do
        if key in self._refused:
            if not isinstance(message, AuthToken):
                return
            self._refused.discard(key)
        name, _session = check_document_key(key)
        if len(self.sessions) + len(self._pending) >= self._services.settings.max_documents_per_socket:
            raise ClientError(CloseCode.POLICY_VIOLATION, "too many documents on one socket")
        if len(self._pending) >= _PENDING_KEYS:
            raise ClientError(CloseCode.RESET_CONNECTION, "too many documents waiting for authentication")
        pending = self._pending[key] = _Pending()
        credentials = self._credentials
        if isinstance(message, AuthToken):
            if message.token:
                credentials = replace(credentials, token=message.token)
        else:
            self._queue(pending, message)  # a v2 provider without a token: socket credentials
        pending.task = self._tasks.create_task(
            self._open(key, name, credentials, isinstance(message, AuthToken))
        )

    def _queue(self, pending: _Pending, message: HocuspocusMessage) -> None:
        pending.messages.append(message)
        pending.size += _message_size(message)
        if len(pending.messages) > _PENDING_MESSAGES or pending.size > _PENDING_BYTES:
            raise ClientError(CloseCode.RESET_CONNECTION, "too much sent before authentication")

    async def _open(self, key: str, name: str, credentials: Credentials, answer_auth: bool) -> None:
        """Authenticate and authorize `key`, join its room, then play its queued frames."""
        try:
            access = await check_access(self._services, credentials, name)
            if access.refusal is not None:
                self._pending.pop(key, None)
                if len(self._refused) < _PENDING_KEYS:  # bounded: beyond it, asked again
                    self._refused.add(key)
                log.warning("%s %r: permission denied: %s", self._label, name[:64], access.refusal[1])
                self.sender.send(hocuspocus.encode_frame(key, PermissionDenied(access.refusal[1])))
                return
            channel = HocuspocusChannel(self, key, f"{self._label} {name!r}")
            counters = self._services.counters
            session = ClientSession(name, access.principal, access.grant, channel, counters, credentials)
            room = await self._services.rooms.join(name, session)
        except RoomLoadError as exc:
            log.error("%s: %s", self._label, exc)
            self.sender.close(CloseCode.INTERNAL_ERROR, "document could not be loaded")
            return
        except Exception:
            log.exception("%s: opening %r failed", self._label, name[:64])
            self.sender.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        pending = self._pending.pop(key, None)
        if self._closed or pending is None:
            self._services.rooms.leave(room, session)
            return
        self.sessions[key] = session
        self._services.registry.add(session, access.epoch)
        self._services.hooks.connected(session)
        if answer_auth:
            channel.send_message(Authenticated(_scope(session.grant)))
        session.start(room, lambda r: _greet(channel, r))
        # Nothing awaits from here on: no frame of this key can slip in between.
        dispatch = functools.partial(self._dispatch, key, session)
        for message in pending.messages:
            if not guarded(self.sender, channel.label, dispatch, message):
                return

    def _dispatch(self, key: str, session: ClientSession, message: HocuspocusMessage) -> None:
        if isinstance(message, SyncStep1 | SyncStep2 | SyncUpdate | AwarenessMessage | QueryAwareness):
            session.handle(message)
        elif isinstance(message, CloseDocument):
            self.close_key(key)
            self.sender.send(hocuspocus.encode_frame(key, CloseDocument("provider_initiated")))
        elif isinstance(message, AuthToken):
            self.sender.send(hocuspocus.encode_frame(key, Authenticated(_scope(session.grant))))
        elif isinstance(message, Stateless):
            log.debug("stateless message on %r ignored (no hook installed)", session.document)
        else:
            raise ClientError(
                CloseCode.PROTOCOL_ERROR, f"{type(message).__name__} is sent by the server only"
            )

    def close_key(self, key: str) -> None:
        session = self.sessions.pop(key, None)
        if session is not None:
            self._services.registry.remove(session)
            self._services.rooms.leave(session.room, session)
            self._services.hooks.disconnected(session)

    def close_all(self) -> None:
        self._closed = True
        for pending in self._pending.values():
            if pending.task is not None:
                pending.task.cancel()
        self._pending.clear()
        for key in list(self.sessions):
            self.close_key(key)


class HocuspocusEndpoint(ClientEndpoint):
    kind = "hp"

    async def serve(self, websocket: WebSocket) -> None:
        label = self._label(websocket)
        await websocket.accept()
        sender = self._sender(websocket, label)
        credentials = credentials_from(websocket)
        self._counters.connections_hocuspocus += 1
        try:
            async with asyncio.TaskGroup() as tasks:
                socket = HocuspocusSocket(self._services, sender, credentials, label, tasks)
                sender.bind(tasks)
                try:
                    await self._receive_loop(websocket, sender, socket.handle_frame, label)
                finally:
                    socket.close_all()
                    if not sender.closing:
                        sender.finish()
        finally:
            self._counters.connections_hocuspocus -= 1
