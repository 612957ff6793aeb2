"""A room: one document open on this node, with its peers and their presence.

Document mutations are synchronous methods: a message is applied, stored and fanned out
without an `await`, so the room never sees two messages interleave. Fan-out never waits
for a peer: each peer queues what it is given and drops itself if it falls behind.

Origins decide what happens to an update (DESIGN.md, "The update path"):
- from a local client: applied, stored by this node, echoed to every local peer and
  published to the other nodes of the site;
- from another node: applied and echoed to local peers only; that node stores it. Until
  it says the update is durable, this room keeps a copy, and writes it itself if it must
  vouch for it (a Hocuspocus acknowledgement, unloading) or if the origin stays silent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from crdt.awareness import AwarenessTable
from crdt.document import Document
from crdt.errors import CrdtError
from crdt.updates import EMPTY_UPDATE, merge
from protocol import hocuspocus, ywebsocket
from protocol.backplane import BackplaneKind, BackplaneMessage, decode_site_update, encode_site_update
from protocol.errors import ProtocolError
from protocol.messages import AwarenessMessage, SyncUpdate

from .backplane.ports import Backplane
from .backplane.sequencing import InboundSequences
from .metrics import Counters
from .persistence import UpdateWriter
from .store.ports import LOCAL_ORIGIN

__all__ = ["Outgoing", "Peer", "RemoteNode", "Room"]

log = logging.getLogger(__name__)

Callback = Callable[[], None]

_MERGE_AT_MOST = 32


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


class Peer(Hashable, Protocol):
    """Something attached to a room that receives its fan-out (a client connection)."""

    def deliver(self, message: Outgoing) -> None: ...


@dataclass(frozen=True, slots=True)
class RemoteNode:
    """Owner of presence states that arrived from another node of the site."""

    origin: str


@dataclass(frozen=True, slots=True)
class RemoteSite:
    """Origin of updates and presence that arrived over a site link."""

    site: str


PresenceSink = Callable[[str, bytes], None]


@dataclass(slots=True)
class _Unconfirmed:
    seq: int  # the origin's sequence number; 0 for updates that came from a repair
    update: bytes
    received: float
    site: str  # the peer site it came from, or LOCAL_ORIGIN
    author: str = ""  # who made it (site updates carry it; "" if not known here)


class Room:
    def __init__(
        self,
        name: str,
        document: Document,
        writer: UpdateWriter,
        backplane: Backplane,
        counters: Counters,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.document = document
        self.awareness = AwarenessTable()
        self.peers: set[Peer] = set()
        self._writer = writer
        self._backplane = backplane
        self._clock = clock
        self._counters = counters
        self._inbound = InboundSequences()
        self._unconfirmed: dict[str, list[_Unconfirmed]] = {}
        self._pending_fan_out: list[bytes] = []
        # Where presence of this node's own clients goes besides the room (site links).
        self.presence_sink: PresenceSink | None = None

    # -- local clients -------------------------------------------------------------------

    def apply_update(self, update: bytes, origin: Peer | None, on_durable: Callback | None = None) -> bool:
        """Apply a client's update; store, fan out and publish it if it is new. `on_durable`
        runs once the update is durable; for a no-op, once everything this room vouches for
        is. Raises `crdt.errors.CrdtError` for an undecodable update; nothing changes then."""
        is_new = self.document.apply(update, origin)
        if is_new:
            self._counters.updates_from_clients += 1
            seq = self._backplane.publish(self.name, BackplaneKind.UPDATE, update)
            self._writer.submit(self.name, update, self._durable_callback(seq, on_durable))
            # Echo to every peer, the sender too: y-websocket's sync-status and Hocuspocus
            # providers expect it, and applying an update twice is harmless.
            self._fan_out(update)
        elif on_durable is not None:
            self.ensure_durable(on_durable)
        return is_new

    def _durable_callback(self, seq: int, then: Callback | None) -> Callback:
        def durable() -> None:
            self._backplane.mark_durable(self.name, seq)
            if then is not None:
                then()

        return durable

    def apply_awareness(self, update: bytes, origin: Peer) -> None:
        """Raises `protocol.errors.ProtocolError` for a malformed awareness update."""
        change = self.awareness.apply(update, origin, self._clock())
        if change.update is not None:
            # Echo to the sender as well: a lone client's watchdog lives on that echo.
            self.broadcast(Outgoing(AwarenessMessage(change.update)))
            self._publish_presence(change.update)

    def _publish_presence(self, update: bytes) -> None:
        self._backplane.publish(self.name, BackplaneKind.AWARENESS, update)
        if self.presence_sink is not None:
            self.presence_sink(self.name, update)

    def attach(self, peer: Peer) -> None:
        self.peers.add(peer)

    def detach(self, peer: Peer) -> None:
        """Remove a peer and, at once, the presence of the clients it controlled."""
        self.peers.discard(peer)
        change = self.awareness.remove_owned_by(peer)
        if change.update is not None:
            self.broadcast(Outgoing(AwarenessMessage(change.update)))
            self._publish_presence(change.update)
        if not self.peers:
            self.write_unconfirmed()

    def expire_awareness(self, timeout: float) -> None:
        change = self.awareness.expire(self._clock(), timeout)
        if change.update is not None:
            self.broadcast(Outgoing(AwarenessMessage(change.update)))

    def _fan_out(self, update: bytes) -> None:
        """Send `update` to every peer at the end of this event-loop turn, merged with the
        other updates of the turn: one frame per peer instead of one per update."""
        self._pending_fan_out.append(update)
        if len(self._pending_fan_out) == 1:
            asyncio.get_running_loop().call_soon(self._flush_fan_out)

    def _flush_fan_out(self) -> None:
        pending, self._pending_fan_out = self._pending_fan_out, []
        # Merging costs grow faster than linearly with the count: merge in small groups.
        for start in range(0, len(pending), _MERGE_AT_MOST):
            group = pending[start : start + _MERGE_AT_MOST]
            self.broadcast(Outgoing(SyncUpdate(group[0] if len(group) == 1 else merge(group))))

    def broadcast(self, message: Outgoing) -> None:
        if isinstance(message.message, SyncUpdate):
            self._counters.updates_to_clients += len(self.peers)
        else:
            self._counters.awareness_to_clients += len(self.peers)
        for peer in list(self.peers):
            peer.deliver(message)

    # -- durability ----------------------------------------------------------------------

    def ensure_durable(self, callback: Callback) -> None:
        """Run `callback` once everything this room holds is durable somewhere, writing the
        updates of other nodes that have not been confirmed yet."""
        if not self.write_unconfirmed(callback):
            self._writer.when_durable(callback)

    def write_unconfirmed(self, then: Callback | None = None, older_than: float | None = None) -> bool:
        """Store the remote updates not yet confirmed durable by their origin (all, or those
        received before `older_than`). Writing an update twice is harmless."""
        batch: list[_Unconfirmed] = []
        for origin, entries in list(self._unconfirmed.items()):
            keep = [e for e in entries if older_than is not None and e.received >= older_than]
            batch.extend(e for e in entries if older_than is None or e.received < older_than)
            if keep:
                self._unconfirmed[origin] = keep
            else:
                del self._unconfirmed[origin]
        if not batch:
            return False
        # One row each: merging many updates costs far more than writing them. The origin
        # site is kept, so federation never sends a peer's update back to it.
        for entry in batch[:-1]:
            self._writer.submit(self.name, entry.update, origin=entry.site, author=entry.author)
        self._writer.submit(self.name, batch[-1].update, then, origin=batch[-1].site, author=batch[-1].author)
        return True

    def write_stale_unconfirmed(self, timeout: float) -> None:
        self.write_unconfirmed(older_than=self._clock() - timeout)

    @property
    def unconfirmed(self) -> int:
        return sum(len(entries) for entries in self._unconfirmed.values())

    # -- other nodes ---------------------------------------------------------------------

    def receive_remote(self, message: BackplaneMessage) -> bool:
        """Handle a message from another node of the site. Returns True when messages from
        that node were missed, so the caller repairs the document."""
        gap = self._inbound.observe(message)
        self._confirm(message.origin, message.durable_through)
        try:
            if message.kind == BackplaneKind.UPDATE:
                self.apply_remote_update(message.payload, message.origin, message.seq)
            elif message.kind == BackplaneKind.SITE_UPDATE:
                site, update, author = decode_site_update(message.payload)
                self.apply_remote_update(update, message.origin, message.seq, site, author)
            elif message.kind == BackplaneKind.AWARENESS:
                change = self.awareness.apply(message.payload, RemoteNode(message.origin), self._clock())
                if change.update is not None:
                    self.broadcast(Outgoing(AwarenessMessage(change.update)))
            elif message.kind == BackplaneKind.SYNC_REQUEST:
                self._answer_sync_request(message)
            elif message.kind == BackplaneKind.SYNC_REPLY and message.target == self._backplane.node:
                self.apply_remote_update(message.payload, "", 0, LOCAL_ORIGIN)
        except (CrdtError, ProtocolError) as exc:
            log.error("%r: bad %s from node %s: %s", self.name, message.kind.name, message.origin, exc.reason)
        return gap

    def apply_remote_update(
        self, update: bytes, origin: str, seq: int, site: str = LOCAL_ORIGIN, author: str = ""
    ) -> bool:
        """Apply an update from another node ("" = several, from a repair). Not stored here
        and not published again; kept until its origin confirms it durable."""
        is_new = self.document.apply(update, RemoteNode(origin))
        if is_new:
            self._counters.updates_from_nodes += 1
            entry = _Unconfirmed(seq, update, self._clock(), site, author)
            self._unconfirmed.setdefault(origin, []).append(entry)
            self._fan_out(update)
        return is_new

    def apply_site_update(self, update: bytes, site: str, author: str = "") -> bool:
        """Apply an update from a peer site: stored here (with its origin, so it is never
        sent back), published to the other nodes and fanned out."""
        is_new = self.document.apply(update, RemoteSite(site))
        if is_new:
            self._counters.updates_from_sites += 1
            payload = encode_site_update(site, update, author)
            seq = self._backplane.publish(self.name, BackplaneKind.SITE_UPDATE, payload)
            self._writer.submit(
                self.name, update, self._durable_callback(seq, None), origin=site, author=author
            )
            self._fan_out(update)
        else:
            self.write_unconfirmed()  # the link acknowledges once what we hold is durable
        return is_new

    def apply_site_presence(self, update: bytes, site: str) -> None:
        """Presence from a peer site: shown to local clients and the other nodes only."""
        change = self.awareness.apply(update, RemoteSite(site), self._clock())
        if change.update is not None:
            self.broadcast(Outgoing(AwarenessMessage(change.update)))
            self._backplane.publish(self.name, BackplaneKind.AWARENESS, change.update)

    def apply_stored_update(self, update: bytes) -> bool:
        """Apply an update read back from the store (durable already): fan out only."""
        is_new = self.document.apply(update, None)
        if is_new:
            self._fan_out(update)
        return is_new

    def _confirm(self, origin: str, durable_through: int) -> None:
        entries = self._unconfirmed.get(origin)
        if entries:
            left = [e for e in entries if e.seq > durable_through]
            if left:
                self._unconfirmed[origin] = left
            else:
                del self._unconfirmed[origin]

    def _answer_sync_request(self, message: BackplaneMessage) -> None:
        diff = self.document.diff(message.payload)
        if diff != EMPTY_UPDATE:
            self._backplane.publish(self.name, BackplaneKind.SYNC_REPLY, diff, target=message.origin)
        # The asker also lacks the presence of our clients (it renews only every 15 s).
        local = [c for c, owner in self.awareness.owners().items() if not isinstance(owner, RemoteNode)]
        states = self.awareness.encode_clients(local)
        if states is not None:
            self._backplane.publish(self.name, BackplaneKind.AWARENESS, states)

    def request_sync(self) -> None:
        """Ask the other nodes for whatever this room lacks (catch-up after load or a gap)."""
        self._backplane.publish(self.name, BackplaneKind.SYNC_REQUEST, self.document.state_vector())

    @property
    def idle(self) -> bool:
        """No peers and nothing left to flush: safe to unload."""
        return not self.peers and not self._unconfirmed and self._writer.pending(self.name) == 0
