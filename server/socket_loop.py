"""What both client endpoints share: their collaborators, the receive loop, and the one
place where an error while handling a frame becomes a close code.

A frame is handled completely before the next is read (messages of one connection never
interleave). Whatever a client sends, the worst outcome is that its own socket is closed
with a code and a reason; the room and the other clients are unaffected.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from starlette.websockets import WebSocket

from crdt.errors import CrdtError
from protocol.errors import ProtocolError, UnknownMessageType

from .auth.ports import Authenticator, Authorizer, Credentials, Grant, Principal, Unauthenticated
from .close_codes import CloseCode
from .errors import ClientError, RoomLoadError
from .hooks import Hooks
from .metrics import Counters
from .registry import SessionRegistry
from .rooms import RoomManager
from .sender import SendAccounting, SocketSender
from .settings import Settings

__all__ = ["Access", "ClientEndpoint", "ClientError", "EndpointServices", "Outbox", "check_access", "guarded"]

log = logging.getLogger(__name__)

T = TypeVar("T")

FrameHandler = Callable[[bytes], None]


class Outbox(Protocol):
    """The outbound half of a socket as sessions see it (`sender.SocketSender`)."""

    @property
    def closing(self) -> bool: ...

    def send(self, frame: bytes, coalesce_key: Hashable | None = None) -> None:
        """Queue `frame`; with a key, it replaces a queued frame of the same key."""
        ...

    def close(self, code: int, reason: str) -> None: ...

    def refuse(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class EndpointServices:
    settings: Settings
    rooms: RoomManager
    authenticator: Authenticator
    authorizer: Authorizer
    registry: SessionRegistry
    hooks: Hooks
    counters: Counters
    sends: SendAccounting | None = None  # the node's byte budgets; each endpoint its own if None


@dataclass(frozen=True, slots=True)
class Access:
    """The authenticator's and authorizer's answer for one document; `refusal` is the
    close code (y-websocket) and reason when access is refused."""

    principal: Principal
    grant: Grant
    refusal: tuple[int, str] | None = None
    epoch: int = 0  # the registry's revocation count when access was decided


async def check_access(services: EndpointServices, credentials: Credentials, document: str) -> Access:
    """Ask the authenticator, then the authorizer; never raises for a refusal."""
    epoch = services.registry.epoch
    try:
        principal = await services.authenticator.authenticate(credentials)
    except Unauthenticated as exc:
        services.counters.refused("unauthenticated")
        return Access(Principal(""), Grant.NONE, (CloseCode.UNAUTHORIZED, exc.reason))
    grant = await services.authorizer.authorize(principal, document)
    if grant == Grant.NONE:
        services.counters.refused("no_access")
        if principal.anonymous:
            return Access(principal, grant, (CloseCode.UNAUTHORIZED, "sign in to open this document"))
        return Access(principal, grant, (CloseCode.FORBIDDEN, "no access to this document"))
    return Access(principal, grant, epoch=epoch)


def guarded(sender: Outbox, label: str, handle: Callable[[T], None], arg: T) -> bool:
    """Run `handle(arg)`; map what it raises to a close of `sender`. False if it closed."""
    try:
        handle(arg)
    except UnknownMessageType as exc:
        sender.refuse(CloseCode.PROTOCOL_ERROR, exc.reason)
    except (ProtocolError, CrdtError) as exc:
        sender.refuse(CloseCode.INVALID_PAYLOAD, exc.reason)
    except ClientError as exc:
        sender.refuse(exc.code, exc.reason)
    except RoomLoadError as exc:
        log.error("%s: %s", label, exc)
        sender.close(CloseCode.INTERNAL_ERROR, "document could not be loaded")
    except Exception:
        log.exception("%s: unexpected error while handling a frame", label)
        sender.close(CloseCode.INTERNAL_ERROR, "internal error")
    else:
        return True
    return False


class ClientEndpoint:
    kind = "client"

    def __init__(self, services: EndpointServices) -> None:
        self._services = services
        self._settings = services.settings
        self._rooms = services.rooms
        self._counters = services.counters
        self._ids = itertools.count(1)
        self.sends = services.sends or SendAccounting(services.settings.send_budget)

    def _label(self, websocket: WebSocket) -> str:
        client = websocket.client
        return f"{self.kind}#{next(self._ids)} {client.host if client else '?'}"

    def _sender(self, websocket: WebSocket, label: str) -> SocketSender:
        return SocketSender(websocket, self.sends, label, self._counters)

    async def _access(self, credentials: Credentials, document: str) -> Access:
        return await check_access(self._services, credentials, document)

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
        max_size = self._settings.max_message_size
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
            if len(data) > max_size:
                sender.refuse(CloseCode.MESSAGE_TOO_BIG, "message too big")
                return
            if not guarded(sender, label, handle_frame, data):
                return
