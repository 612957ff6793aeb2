"""The client session: one socket × one document, whichever wire format.

It holds who is connected (the principal), what they may do (the grant, decided once by
the authorizer and cached here: no per-message database call) and the channel back to the
client, and does the one dispatch of sync and presence messages for both endpoints.

Outcomes of a message: applied; refused with the socket kept (Hocuspocus: SyncStatus
false; y-websocket: dropped, logged, the client resynced); or the session is closed with a
code (a refusal that cuts the client off, see `hooks.Refused`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from crdt.updates import adds_nothing
from protocol.messages import AwarenessMessage, QueryAwareness, SyncStep1, SyncStep2, SyncUpdate

from .auth.ports import Credentials, Grant, Principal
from .close_codes import CloseCode
from .hooks import Refused
from .metrics import Counters
from .origins import ClientOrigin
from .room import Outgoing, Room

__all__ = ["Channel", "ClientSession", "SessionMessage"]

log = logging.getLogger(__name__)

SessionMessage = SyncStep1 | SyncStep2 | SyncUpdate | AwarenessMessage | QueryAwareness

# Updates held while a revocation is being checked, per session, before it is closed.
_HELD_BYTES_LIMIT = 4 * 1024 * 1024
_SYNC_ANSWER = "sync-answer"  # coalescing key: one queued SyncStep2 per session is enough


class Channel(Protocol):
    """How a session's messages reach its client, in that client's wire format."""

    label: str

    def send(
        self, message: SyncStep1 | SyncStep2 | AwarenessMessage, coalesce_key: str | None = None
    ) -> None: ...

    def deliver(self, message: Outgoing) -> None:
        """A room broadcast, encoded once for every peer of the same format."""
        ...

    def acknowledge(self, applied: bool) -> None:
        """Hocuspocus: SyncStatus. y-websocket has no acknowledgement (the echo is one)."""
        ...

    def resync(self, state_vector: bytes) -> None:
        """After a refused update: y-websocket sends its SyncStep1 again; Hocuspocus none."""
        ...

    def close(self, code: int, reason: str) -> None: ...


class ClientSession:
    """The room's peer for one client on one document."""

    __slots__ = (
        "_counters",
        "_held",
        "_held_bytes",
        "_refusals",
        "channel",
        "credentials",
        "document",
        "grant",
        "origin",
        "principal",
        "room",
    )

    room: Room  # set by `start`, right after the session joined its room

    def __init__(
        self,
        document: str,
        principal: Principal,
        grant: Grant,
        channel: Channel,
        counters: Counters,
        credentials: Credentials | None = None,
    ) -> None:
        self.document = document
        self.principal = principal
        self.grant = grant
        self.channel = channel
        self.credentials = credentials or Credentials()
        self.origin = ClientOrigin(self, principal.id)
        self._counters = counters
        self._refusals = 0
        self._held: list[SyncStep2 | SyncUpdate] | None = None
        self._held_bytes = 0

    def __repr__(self) -> str:
        return f"<session {self.channel.label} {self.principal.id or 'anonymous'} {self.grant.name}>"

    # -- the room's peer -----------------------------------------------------------------

    def deliver(self, message: Outgoing) -> None:
        self.channel.deliver(message)

    def start(self, room: Room, greet: Callable[[Room], None]) -> None:
        """The session joined `room`; `greet` sends the wire format's opening messages."""
        self.room = room
        greet(room)

    # -- the one dispatch ----------------------------------------------------------------

    def handle(self, message: SessionMessage) -> None:
        """Raises `ProtocolError`/`CrdtError` for bad input (the endpoint closes the socket)."""
        room = self.room
        if isinstance(message, SyncStep1):
            self.channel.send(SyncStep2(room.document.diff(message.state_vector)), coalesce_key=_SYNC_ANSWER)
        elif isinstance(message, SyncStep2 | SyncUpdate):
            if self._held is not None:
                self._hold(message)
            else:
                self._receive_update(message)
        elif isinstance(message, AwarenessMessage):
            room.apply_awareness(message.update, self)
        else:
            states = room.awareness.encode_all()
            if states is not None:
                self.channel.send(AwarenessMessage(states))

    def _receive_update(self, message: SyncStep2 | SyncUpdate) -> None:
        room = self.room
        if self.grant < Grant.WRITE:
            # Never applied. A SyncStep2 that adds nothing is answered "applied" (as
            # Hocuspocus does): a read-only client's handshake must not look refused.
            if isinstance(message, SyncStep2) and adds_nothing(message.update, room.document.state_vector()):
                self.channel.acknowledge(True)
            else:
                self._refused(Refused("read-only access", kind="read_only"), message)
            return
        try:
            room.apply(message.update, self.origin, on_durable=self._acknowledge)
        except Refused as refusal:
            self._refused(refusal, message)

    def _acknowledge(self) -> None:
        self.channel.acknowledge(True)

    def _refused(self, refusal: Refused, message: SyncStep2 | SyncUpdate) -> None:
        self._counters.refused(refusal.kind)
        self._refusals += 1
        # The first refusal of a session is worth a line; a viewer typing is not worth one per key.
        level = logging.WARNING if self._refusals == 1 or refusal.cut_off else logging.DEBUG
        log.log(level, "%s: update refused (%s): %s", self.channel.label, refusal.kind, refusal.reason)
        if refusal.cut_off:
            self.channel.close(CloseCode.POLICY_VIOLATION, refusal.reason)
            return
        self.channel.acknowledge(False)
        if isinstance(message, SyncUpdate):  # not after a SyncStep2: that is the resync's answer
            self.channel.resync(self.room.document.state_vector())

    # -- revocation ----------------------------------------------------------------------

    def hold(self) -> None:
        """Keep updates aside (not applied, not refused) until `release`: a revocation is
        being checked. Refusing them instead would leave an editor who keeps the right to
        write with updates that wait forever for the refused ones."""
        if self._held is None:
            self._held = []

    def release(self, grant: Grant) -> None:
        """The check is done: apply the held updates under `grant` (lower or equal)."""
        self.grant = min(self.grant, grant)
        held, self._held, self._held_bytes = self._held or [], None, 0
        for message in held:
            self._receive_update(message)

    def _hold(self, message: SyncStep2 | SyncUpdate) -> None:
        assert self._held is not None
        self._held.append(message)
        self._held_bytes += len(message.update)
        if self._held_bytes > _HELD_BYTES_LIMIT:
            self.channel.close(CloseCode.TRY_AGAIN_LATER, "too many updates while access was checked")

    def close(self, code: int, reason: str) -> None:
        self._held = None
        self.channel.close(code, reason)
