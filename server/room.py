"""A room: one document open on this node, with its peers and their presence.

Every update enters through `Room.apply(update, origin)`; what happens to it is the
origin's row of `origins.POLICY` (store? publish? keep until confirmed? acknowledge?).
Applying is synchronous: a message is validated, applied, stored and fanned out without an
`await`, so the room never sees two messages interleave. Fan-out never waits for a peer:
each peer queues what it is given and drops itself if it falls behind.

Acknowledgement is only for what is stored: the sender of an update gets its echo (and a
Hocuspocus client its SyncStatus) once the update is durable; an update the document
already holds is acknowledged only if the document holds the same content.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from crdt.awareness import AwarenessTable, RemoteOwner
from crdt.document import ApplyResult, Document, Outcome
from crdt.errors import CrdtError
from crdt.update_format import UpdateSummary, read_update
from crdt.updates import EMPTY_UPDATE, merge
from protocol import hocuspocus, ywebsocket
from protocol.backplane import BackplaneKind, BackplaneMessage, decode_update_payload, encode_update_payload
from protocol.errors import ProtocolError
from protocol.messages import AwarenessMessage, SyncUpdate

from .backplane.ports import Backplane
from .backplane.sequencing import InboundSequences
from .hooks import ChangeEvent, Hooks, Refused, UpdateContext
from .metrics import Counters
from .origins import STORE_ORIGIN, ClientOrigin, NodeOrigin, Origin, Publish, SiteOrigin, policy_of
from .persistence import UpdateWriter
from .presence import vouch_for
from .writers import WriterTable

__all__ = ["Outgoing", "Peer", "RemoteNode", "RemoteSite", "Room"]

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
    """Something attached to a room that receives its fan-out (a client session)."""

    def deliver(self, message: Outgoing) -> None: ...


@dataclass(frozen=True, slots=True)
class RemoteNode(RemoteOwner):
    """Owner of presence states that arrived from another node of the site."""

    origin: str


@dataclass(frozen=True, slots=True)
class RemoteSite(RemoteOwner):
    """Owner of presence states that arrived over a site link."""

    site: str


@dataclass(slots=True)
class _Unconfirmed:
    origin: NodeOrigin
    update: bytes
    received: float


class Room:
    def __init__(
        self,
        name: str,
        document: Document,
        writer: UpdateWriter,
        backplane: Backplane,
        counters: Counters,
        hooks: Hooks,
        clock: Callable[[], float] = time.monotonic,
        awareness: AwarenessTable | None = None,
    ) -> None:
        self.name = name
        self.document = document
        self.awareness = awareness if awareness is not None else AwarenessTable()
        self.peers: set[Peer] = set()
        self._writer = writer
        self._backplane = backplane
        self._clock = clock
        self._counters = counters
        self._hooks = hooks
        self._writers = WriterTable()
        self.awareness.claimable = self._writers.may_claim_presence
        self.awareness.vouch = vouch_for
        self._inbound = InboundSequences()
        self._unconfirmed: dict[str, list[_Unconfirmed]] = {}
        # Updates of this event-loop turn, fanned out merged at its end; and the peers
        # whose own updates are among them (they get the frame once it is durable).
        self._pending_fan_out: list[bytes] = []
        self._pending_senders: set[Peer] = set()

    # -- the one way in ------------------------------------------------------------------

    def apply(self, update: bytes, origin: Origin, on_durable: Callback | None = None) -> bool:
        """Apply `update` from `origin`; True if it brought anything new. `on_durable` runs
        once the update is durable (for a no-op: once what this room vouches for is).

        Raises `crdt.errors.CrdtError` for an update that does not decode, and `Refused`
        for one that may not be applied; the document is unchanged then."""
        policy = policy_of(origin)
        summary = read_update(update)
        from_client = isinstance(origin, ClientOrigin)
        if isinstance(origin, ClientOrigin):
            self._check_client_update(summary, origin)
        elif isinstance(origin, SiteOrigin):
            self._writers.check_site(summary, origin, self.awareness.holder_of)
        context = self._context(update, origin) if self._hooks.validates else None
        if context is not None:
            self._hooks.before_apply(context)
        # Parents a client names must be checkable here; other nodes and sites checked theirs.
        result = self.document.integrate(update, unknown_parents=not from_client, summary=summary)
        if not result.worth_storing:
            self._no_op(update, origin, result, on_durable)
            return False
        if context is not None:
            self._hooks.applied(context)
        if isinstance(origin, ClientOrigin):
            self._writers.claim(summary, origin)
            self._counters.updates_from_clients += 1
        elif isinstance(origin, NodeOrigin):
            self._writers.claim_remote(summary, origin)
            self._counters.updates_from_nodes += 1
        elif isinstance(origin, SiteOrigin):
            self._counters.updates_from_sites += 1
        seq = 0
        if policy.publish is not Publish.NOTHING:
            payload = encode_update_payload(origin.site, origin.author, update)
            seq = self._backplane.publish(self.name, BackplaneKind.UPDATE, payload)
        if policy.store:
            self._writer.submit(
                self.name,
                update,
                self._durable_callback(seq, update, origin, on_durable if policy.acknowledge else None),
                origin=origin.site,
                author=origin.author,
            )
        if policy.keep_unconfirmed and isinstance(origin, NodeOrigin):
            entry = _Unconfirmed(origin, update, self._clock())
            self._unconfirmed.setdefault(origin.node, []).append(entry)
        self._fan_out(update, origin.session if isinstance(origin, ClientOrigin) else None)
        return True

    def _check_client_update(self, summary: UpdateSummary, origin: ClientOrigin) -> None:
        """What a client may not do, whoever it is: write another client's clocks, or
        delete clocks the document does not have yet (another user's future edits)."""
        self._writers.check(summary, origin, self.awareness.holder_of)
        if summary.deletes and self.document.deletes_beyond(summary):
            raise Refused(
                "update deletes what the document does not hold", kind="future_delete", cut_off=True
            )

    def _no_op(self, update: bytes, origin: Origin, result: ApplyResult, on_durable: Callback | None) -> None:
        """An update with nothing new. Acknowledged only if what it claims is stored: a
        pending one sent again was stored the first time; a known one must hold the same
        content under its clocks, or acknowledging it would confirm an edit that is lost."""
        if on_durable is not None:
            if result.outcome is Outcome.KNOWN and isinstance(origin, ClientOrigin):
                if not self.document.holds(update):
                    raise Refused("update conflicts with stored content", kind="conflict", cut_off=True)
            self.ensure_durable(on_durable)
        elif isinstance(origin, SiteOrigin):
            self.write_unconfirmed()  # the link acknowledges once what we hold is durable

    def _context(self, update: bytes, origin: Origin) -> UpdateContext:
        session = origin.session if isinstance(origin, ClientOrigin) else None
        return UpdateContext(
            self.name,
            update,
            origin,
            self.document,
            getattr(session, "principal", None),
            getattr(session, "grant", None),
        )

    def _durable_callback(self, seq: int, update: bytes, origin: Origin, then: Callback | None) -> Callback:
        def durable() -> None:
            if seq:
                self._backplane.mark_durable(self.name, seq)
            self._hooks.changed(ChangeEvent(self.name, update, origin, origin.author))
            if then is not None:
                then()

        return durable

    # -- presence ------------------------------------------------------------------------

    def apply_awareness(self, update: bytes, owner: Peer) -> None:
        """Raises `protocol.errors.ProtocolError` for a malformed awareness update."""
        change = self.awareness.apply(update, owner, self._clock())
        if change.update is not None:
            # Echo to the sender as well: a lone client's watchdog lives on that echo.
            self.broadcast(Outgoing(AwarenessMessage(change.update)))
            self._publish_presence(change.update)

    def _publish_presence(self, update: bytes) -> None:
        self._backplane.publish(self.name, BackplaneKind.AWARENESS, update)
        self._hooks.presence(self.name, update)

    def apply_site_presence(self, update: bytes, site: str) -> None:
        """Presence from a peer site: shown to local clients and the other nodes only."""
        change = self.awareness.apply(update, RemoteSite(site), self._clock())
        if change.update is not None:
            self.broadcast(Outgoing(AwarenessMessage(change.update)))
            self._backplane.publish(self.name, BackplaneKind.AWARENESS, change.update)

    def attach(self, peer: Peer) -> None:
        self.peers.add(peer)

    def detach(self, peer: Peer) -> None:
        """Remove a peer and, at once, the presence of the clients it controlled."""
        self.peers.discard(peer)
        self._pending_senders.discard(peer)
        self._writers.release(peer)
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

    # -- fan-out -------------------------------------------------------------------------

    def _fan_out(self, update: bytes, sender: Hashable | None) -> None:
        """Send `update` to every peer at the end of this event-loop turn, merged with the
        other updates of the turn: one frame per peer instead of one per update."""
        self._pending_fan_out.append(update)
        if sender is not None and sender in self.peers:
            self._pending_senders.add(sender)
        if len(self._pending_fan_out) == 1:
            asyncio.get_running_loop().call_soon(self._flush_fan_out)

    def _flush_fan_out(self) -> None:
        pending, self._pending_fan_out = self._pending_fan_out, []
        senders, self._pending_senders = self._pending_senders, set()
        # Merging costs grow faster than linearly with the count: merge in small groups.
        messages = [
            Outgoing(SyncUpdate(group[0] if len(group) == 1 else merge(group)))
            for group in (pending[i : i + _MERGE_AT_MOST] for i in range(0, len(pending), _MERGE_AT_MOST))
        ]
        for message in messages:
            self.broadcast(message, skip=senders)
        if senders:
            # The senders' echo is their acknowledgement: it waits for the store.
            self._writer.when_durable(lambda: self._echo(messages, senders))

    def _echo(self, messages: list[Outgoing], senders: set[Peer]) -> None:
        for peer in senders:
            if peer in self.peers:
                for message in messages:
                    self._counters.updates_to_clients += 1
                    peer.deliver(message)

    def broadcast(self, message: Outgoing, skip: set[Peer] | None = None) -> None:
        peers = self.peers if not skip else self.peers - skip
        if isinstance(message.message, SyncUpdate):
            self._counters.updates_to_clients += len(peers)
        else:
            self._counters.awareness_to_clients += len(peers)
        for peer in list(peers):
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
        for node, entries in list(self._unconfirmed.items()):
            keep = [e for e in entries if older_than is not None and e.received >= older_than]
            batch.extend(e for e in entries if older_than is None or e.received < older_than)
            if keep:
                self._unconfirmed[node] = keep
            else:
                del self._unconfirmed[node]
        if not batch:
            return False
        # One row each: merging many updates costs far more than writing them. The origin
        # site is kept, so federation never sends a peer's update back to it.
        for entry in batch[:-1]:
            self._writer.submit(self.name, entry.update, origin=entry.origin.site, author=entry.origin.author)
        last = batch[-1]
        self._writer.submit(self.name, last.update, then, origin=last.origin.site, author=last.origin.author)
        return True

    def write_stale_unconfirmed(self, timeout: float) -> None:
        self.write_unconfirmed(older_than=self._clock() - timeout)

    @property
    def unconfirmed(self) -> int:
        return sum(len(entries) for entries in self._unconfirmed.values())

    def _confirm(self, node: str, durable_through: int) -> None:
        entries = self._unconfirmed.get(node)
        if entries:
            left = [e for e in entries if e.origin.seq > durable_through]
            if left:
                self._unconfirmed[node] = left
            else:
                del self._unconfirmed[node]

    # -- other nodes ---------------------------------------------------------------------

    def receive_remote(self, message: BackplaneMessage) -> bool:
        """Handle a message from another node of the site. Returns True when messages from
        that node were missed, so the caller repairs the document."""
        gap = self._inbound.observe(message)
        self._confirm(message.origin, message.durable_through)
        try:
            if message.kind == BackplaneKind.UPDATE:
                payload = decode_update_payload(message.payload)
                origin = NodeOrigin(message.origin, message.seq, payload.author, payload.site)
                self.apply(payload.update, origin)
            elif message.kind == BackplaneKind.AWARENESS:
                change = self.awareness.apply(message.payload, RemoteNode(message.origin), self._clock())
                if change.update is not None:
                    self.broadcast(Outgoing(AwarenessMessage(change.update)))
            elif message.kind == BackplaneKind.SYNC_REQUEST:
                self._answer_sync_request(message)
            elif message.kind == BackplaneKind.SYNC_REPLY and message.target == self._backplane.node:
                # Several updates of several nodes, merged: held like any other node's, and
                # written by this node if it must vouch for them.
                self.apply(message.payload, NodeOrigin("", 0, ""))
        except (CrdtError, ProtocolError) as exc:
            log.error("%r: bad %s from node %s: %s", self.name, message.kind.name, message.origin, exc.reason)
        except Refused as exc:
            log.error("%r: refused %s from node %s: %s", self.name, message.kind.name, message.origin, exc)
        return gap

    def apply_stored(self, update: bytes) -> bool:
        """Apply an update read back from the store (a repair): fanned out only."""
        return self.apply(update, STORE_ORIGIN)

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
