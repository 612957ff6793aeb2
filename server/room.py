"""A room: one document open on this node, with its peers and their presence.

Document mutations are synchronous methods: a message is applied, stored and fanned out
without an `await`, so the room never sees two messages interleave. Fan-out never waits
for a peer: each peer queues what it is given and drops itself if it falls behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from crdt.awareness import AwarenessTable
from crdt.document import Document
from protocol import hocuspocus, ywebsocket
from protocol.messages import AwarenessMessage, SyncUpdate

from .persistence import UpdateWriter

__all__ = ["Outgoing", "Peer", "Room"]


class Outgoing:
    """One message for every peer of a room, encoded once per wire format and key."""

    __slots__ = ("_hocuspocus", "_ywebsocket", "message")

    def __init__(self, message: SyncUpdate | AwarenessMessage) -> None:
        self.message = message
        self._ywebsocket: bytes | None = None
        self._hocuspocus: dict[str, bytes] = {}

    def ywebsocket_frame(self) -> bytes:
        if self._ywebsocket is None:
            self._ywebsocket = ywebsocket.encode(self.message)
        return self._ywebsocket

    def hocuspocus_frame(self, key: str) -> bytes:
        frame = self._hocuspocus.get(key)
        if frame is None:
            frame = self._hocuspocus[key] = hocuspocus.encode_frame(key, self.message)
        return frame


class Peer(Protocol):
    """Something attached to a room that receives its fan-out (a client connection)."""

    def deliver(self, message: Outgoing) -> None: ...


class Room:
    def __init__(
        self,
        name: str,
        document: Document,
        writer: UpdateWriter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.document = document
        self.awareness = AwarenessTable()
        self.peers: set[Peer] = set()
        self._writer = writer
        self._clock = clock
        self.updates_in = 0

    def apply_update(
        self, update: bytes, origin: Peer | None, on_durable: Callable[[], None] | None = None
    ) -> bool:
        """Apply a client's update; store and fan it out if it is new. `on_durable` runs once
        the update (or, for a no-op, everything before it) is durable. Raises
        `crdt.errors.CrdtError` for an update that does not decode; nothing changes then."""
        is_new = self.document.apply(update, origin)
        if is_new:
            self.updates_in += 1
            self._writer.submit(self.name, update, on_durable)
            # Echo to every peer, the sender too: y-websocket's sync-status and Hocuspocus
            # providers expect it, and applying an update twice is harmless.
            self.broadcast(Outgoing(SyncUpdate(update)))
        elif on_durable is not None:
            self._writer.when_durable(on_durable)
        return is_new

    def apply_awareness(self, update: bytes, origin: Peer | None) -> None:
        """Raises `protocol.errors.ProtocolError` for a malformed awareness update."""
        change = self.awareness.apply(update, origin, self._clock())
        if change.update is not None:
            # Echo to the sender as well: a lone client's watchdog lives on that echo.
            self.broadcast(Outgoing(AwarenessMessage(change.update)))

    def attach(self, peer: Peer) -> None:
        self.peers.add(peer)

    def detach(self, peer: Peer) -> None:
        """Remove a peer and, at once, the presence of the clients it controlled."""
        self.peers.discard(peer)
        change = self.awareness.remove_owned_by(peer)
        if change.update is not None:
            self.broadcast(Outgoing(AwarenessMessage(change.update)))

    def expire_awareness(self, timeout: float) -> None:
        change = self.awareness.expire(self._clock(), timeout)
        if change.update is not None:
            self.broadcast(Outgoing(AwarenessMessage(change.update)))

    def broadcast(self, message: Outgoing) -> None:
        for peer in list(self.peers):
            peer.deliver(message)

    @property
    def idle(self) -> bool:
        """No peers and nothing left to flush: safe to unload."""
        return not self.peers and self._writer.pending(self.name) == 0
