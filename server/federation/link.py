"""One authenticated site link: replicating the log both ways, acknowledging, presence.

Outbound, the link reads this site's update log after the peer's cursor, keeps the rows
this site's own clients wrote for documents the peer shares, signs them as a batch and
sends them, at most `WINDOW` batches ahead of the peer's acknowledgements. A batch covers
a range of the log, so its ACK moves the cursor past rows that were left out too. After a
partition the same loop is the backfill: it starts at the stored cursor.

Inbound, every batch is verified (signature of its origin, origin = the peer, every
document shared with the peer) before anything of it is applied; it is acknowledged once
all of it is durable here. A peer that forges a batch is cut off.

The transport is the handshake's sealed one: every frame carries a MAC under the link's
own keys, so an ACK (or WANT, PRESENCE, REFUSED, ...) comes from the peer or the link
ends. A frame that fails the check ends it loudly (ERROR, samen_link_integrity_failures,
close LINK_INTEGRITY) before anything of it is read; the cursor stays where the peer's
last genuine ACK put it, so the next link sends the rest again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from crdt.errors import CrdtError
from protocol.awareness import AwarenessEntry, decode_awareness_update, encode_awareness_update
from protocol.errors import ProtocolError
from protocol.link_channel import MAC_BYTES
from protocol.sitelink import (
    Ack,
    Batch,
    BatchBody,
    BatchEntry,
    InventoryAck,
    InventoryDone,
    Membership,
    Presence,
    Reassembler,
    Refused,
    SiteLinkMessage,
    Want,
    decode_batch_body,
    decode_link_message,
    encode_batch_body,
    encode_link_message,
    fragments,
)

from ..close_codes import CloseCode
from ..errors import ClientError, RoomLoadError, StoreError
from ..hooks import Refused as UpdateRefused
from ..names import check_document_name
from ..store.ports import LOCAL_ORIGIN, SERVER_AUTHOR, LogRow, ReplicationLog
from .handshake import LinkClosed, LinkTampered, LinkTransport, LinkViolation
from .identity import SiteIdentity
from .inventory import EMPTY_STATE_VECTOR, InventorySender
from .limits import LinkLimits, bad_author, shown
from .peers import Peer, ReplicationScope
from .stats import LinkStats

__all__ = ["LinkSession", "LinkStats", "LinkViolation", "MembershipExchange", "ReplicationTarget"]

log = logging.getLogger(__name__)

WINDOW = 8  # batches sent ahead of the peer's acknowledgements
BATCH_ROWS = 500
BATCH_BYTES = 4 * 1024 * 1024  # and at most half the peer's frame limit (see `_batch`)
# The largest message accepted, in fragments: a document's whole state (an inventory entry or
# a WANT answer) may be this big. One at a time per link.
MAX_MESSAGE = 256 * 1024 * 1024
IDLE_POLL_SECONDS = 2.0  # log wake-ups travel over lossy pub/sub: look anyway now and then
REFUSALS_LOGGED, REFUSAL_LOG_WINDOW = 20, 60.0  # refusals logged one by one per window
PRESENCE_INTERVAL = 0.25  # at most four presence messages per document per second


class ReplicationTarget(Protocol):
    """What a link needs from its node."""

    async def apply_from_site(self, document: str, update: bytes, origin: str, author: str) -> bool:
        """Validate and integrate (into the document, loading it if needed), then store
        (with its origin and author) and fan out an update from a peer. Raises `CrdtError`
        or `Refused` for an update that may not be stored (nothing is), `RoomLoadError`
        when the document cannot be read now."""
        ...

    def when_durable(self, callback: Callable[[], None]) -> None: ...

    def apply_presence(self, document: str, update: bytes, origin: str) -> None: ...

    def drop_presence(self, origin: str) -> None: ...

    async def diff_for(self, document: str, state_vector: bytes) -> bytes: ...


class MembershipExchange(Protocol):
    """Federated spaces' memberships (server/federation/membership.py)."""

    async def send_to(self, peer: str, send: Callable[[SiteLinkMessage], None]) -> None:
        """Send `peer` the memberships it should have, for the link's lifetime."""
        ...

    async def receive(self, peer: Peer, message: Membership) -> None: ...


class LinkSession:
    def __init__(
        self,
        transport: LinkTransport,
        peer: Peer,
        identity: SiteIdentity,
        scope: ReplicationScope,
        store: ReplicationLog,
        target: ReplicationTarget,
        stats: LinkStats,
        peer_max_frame: int,
        memberships: MembershipExchange | None = None,
        limits: LinkLimits | None = None,
    ) -> None:
        self.peer = peer
        self._memberships = memberships
        self._limits = limits or LinkLimits()
        self._queued = 0  # bytes in the outbox: what the peer has not read yet
        self.violated = False  # the peer broke the protocol: the link ended because of it
        self._refusals_logged_at = 0.0
        self._refusals_logged = self._refusals_unlogged = 0
        # Larger messages go in fragments; each frame carries its MAC besides.
        self._frame_budget = peer_max_frame - MAC_BYTES
        self._reassembler = Reassembler(MAX_MESSAGE)
        self._transport = transport
        self._identity = identity
        self._scope = scope
        self._store = store
        self._target = target
        self.stats = stats
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._log_event = asyncio.Event()
        self._in_flight: deque[tuple[int, float]] = deque()  # (last seq, sent at)
        self._window = asyncio.Condition()
        self._presence: dict[str, dict[int, AwarenessEntry]] = {}
        self._inventory = InventorySender(
            peer.site_id,
            identity.site_id,
            store,
            scope,
            lambda name: target.diff_for(name, EMPTY_STATE_VECTOR),
            self._sign_and_send,
            self._send,
            self._outbox.join,
            stats,
        )

    # -- called by the node ---------------------------------------------------------------

    def log_advanced(self) -> None:
        self._log_event.set()

    def queue_presence(self, document: str, update: bytes) -> None:
        """Presence of this site's clients on a shared document; sent throttled."""
        if not self._scope.shares(document, self.peer.site_id):
            return
        entries = self._presence.setdefault(document, {})
        for entry in decode_awareness_update(update):
            known = entries.get(entry.client_id)
            if known is None or known.clock <= entry.clock:
                entries[entry.client_id] = entry

    async def close(self, code: int, reason: str) -> None:
        await self._transport.close(code, reason)

    def request(self, document: str, state_vector: bytes) -> None:
        """Ask the peer for what this site lacks of `document` (it may refuse)."""
        self._send(Want(document, state_vector))

    async def run(self) -> None:
        """Replicate until the link closes; raises nothing for a closed link."""
        self.stats.up = True
        try:
            async with asyncio.TaskGroup() as tasks:
                helpers = [
                    tasks.create_task(self._write(), name=f"link-{self.peer.site_id}-writer"),
                    tasks.create_task(self._send_log(), name=f"link-{self.peer.site_id}-sender"),
                    tasks.create_task(self._send_presence(), name=f"link-{self.peer.site_id}-presence"),
                ]
                if self._memberships is not None:
                    sender = self._memberships.send_to(self.peer.site_id, self._send)
                    helpers.append(tasks.create_task(sender, name=f"link-{self.peer.site_id}-memberships"))
                try:
                    await self._receive()
                finally:
                    for helper in helpers:
                        helper.cancel()
        except* LinkClosed as closed:
            log.info("link to %s closed: %s", self.peer.site_id, closed.exceptions[0])
        except* LinkTampered as tampered:
            self.violated = True
            self.stats.integrity_failures += 1
            log.error(
                "link to %s failed its integrity check: %s; something between the sites tampers with "
                "the link. Closing it; what the peer did not acknowledge is sent again on the next link",
                self.peer.site_id, tampered.exceptions[0],
            )  # fmt: skip
            await self._transport.close(CloseCode.LINK_INTEGRITY, "integrity check failed")
        except* LinkViolation as violation:
            reason = str(violation.exceptions[0])
            self.violated = True
            self.stats.batches_rejected += 1
            peer = self.peer.site_id
            log.error("site %s broke the link protocol: %s; closing the link", peer, shown(reason))
            await self._transport.close(CloseCode.POLICY_VIOLATION, reason)
        except* (StoreError, RoomLoadError) as failed:
            # The store went away under the link (a cursor, the log or a document could not
            # be read): drop the link without acknowledging what could not be applied; it is
            # dialed again and resumes from the stored cursor.
            log.warning("link to %s dropped, store unavailable: %s", self.peer.site_id, failed.exceptions[0])
            await self._transport.close(CloseCode.INTERNAL_ERROR, "store unavailable, reconnect later")
        finally:
            self.stats.up = False
            self._target.drop_presence(self.peer.site_id)

    # -- outbound -------------------------------------------------------------------------

    def _send(self, message: SiteLinkMessage) -> None:
        encoded = encode_link_message(message)
        self._queued += len(encoded)
        self._outbox.put_nowait(encoded)

    async def _write(self) -> None:
        while True:
            message = await self._outbox.get()
            for frame in fragments(message, self._frame_budget):  # back to back
                await self._transport.send(frame)
            self._queued -= len(message)
            del message
            self._outbox.task_done()  # `join` waits for this: the inventory's pace

    async def _send_log(self) -> None:
        acked = await self._store.get_cursor(self.peer.site_id)
        self.stats.sent_seq = acked
        self.stats.observe(await self._store.last_seq(), acked)
        # First what the peer lacks whole (spaces newly shared with it), then the log.
        sent = self.stats.sent_seq = await self._inventory.run(acked)
        while True:
            async with self._window:
                await self._window.wait_for(lambda: len(self._in_flight) < WINDOW)
            self._log_event.clear()  # before reading, so a wake-up during the read is kept
            rows = await self._store.read_log_after(sent, BATCH_ROWS)
            if not rows:
                try:
                    async with asyncio.timeout(IDLE_POLL_SECONDS):
                        await self._log_event.wait()
                except TimeoutError:
                    self.stats.observe(await self._store.last_seq())
                continue
            body = self._batch(rows)
            self._sign_and_send(body)
            self._in_flight.append((body.last_seq, time.monotonic()))
            sent = self.stats.sent_seq = body.last_seq
            self.stats.observe(sent)
            self.stats.updates_sent += len(body.entries)

    def _batch(self, rows: list[LogRow]) -> BatchBody:
        entries: list[BatchEntry] = []
        size = 0
        last = rows[0].seq
        # Checked before a row is added: a batch stays within the budget, unless its one row
        # alone is larger (it then crosses in fragments).
        budget = min(BATCH_BYTES, self._frame_budget // 2)
        for row in rows:
            wanted = row.origin == LOCAL_ORIGIN and self._scope.shares(row.doc, self.peer.site_id)
            if wanted and entries and size + len(row.update) > budget:
                break  # this row and the rest go in the next batch
            last = row.seq
            if wanted:
                entries.append(BatchEntry(row.doc, row.author, row.update))
                size += len(row.update)
        return BatchBody(self._identity.site_id, rows[0].seq, last, tuple(entries))

    def _sign_and_send(self, body: BatchBody) -> None:
        signed = encode_batch_body(body)
        self._send(Batch(signed, self._identity.sign(signed)))

    async def _send_presence(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_INTERVAL)
            pending, self._presence = self._presence, {}
            for document, entries in pending.items():
                self._send(Presence(document, encode_awareness_update(list(entries.values()))))

    # -- inbound --------------------------------------------------------------------------

    async def _receive(self) -> None:
        while True:
            frame = await self._transport.recv()
            try:
                whole = self._reassembler.feed(frame)
                if whole is None:
                    continue  # more pieces to come
                message = decode_link_message(whole)
            except ProtocolError as exc:
                raise LinkViolation(f"malformed message: {exc.reason}") from exc
            del frame, whole
            if isinstance(message, Batch):
                await self._on_batch(message)
            elif isinstance(message, Ack):
                await self._on_ack(message.last_seq)
            elif isinstance(message, Presence):
                self._on_presence(message)
            elif isinstance(message, Want):
                await self._on_want(message)
            elif isinstance(message, Refused):
                self.stats.refusals_received += 1
                peer, document, reason = self.peer.site_id, shown(message.document), shown(message.reason)
                log.warning("site %s refused %s: %s", peer, document, reason)
            elif isinstance(message, InventoryDone):
                self._on_inventory_done(message)
            elif isinstance(message, InventoryAck):
                await self._inventory.acknowledged(message)
            elif isinstance(message, Membership) and self._memberships is not None:
                await self._memberships.receive(self.peer, message)
            else:
                raise LinkViolation(f"unexpected {type(message).__name__} after the handshake")

    async def _on_batch(self, batch: Batch) -> None:
        if not self.peer.public_key.verify(batch.signature, batch.body):
            raise LinkViolation("batch signature does not verify")
        try:
            body = decode_batch_body(batch.body)
        except ProtocolError as exc:
            raise LinkViolation(f"malformed batch: {exc.reason}") from exc
        if body.origin != self.peer.site_id:
            raise LinkViolation(f"batch claims to come from {body.origin!r}")
        for document, author, update in body.entries:
            refusal = self._check_entry(document, author, update, from_log=body.last_seq > 0)
            if refusal is not None:
                self._refuse(document, refusal)
                continue
            try:
                await self._target.apply_from_site(document, update, self.peer.site_id, author)
            except CrdtError as exc:
                # Never stored: a document holds only what integrates (an update that decodes
                # but breaks the CRDT core would make every later load fail).
                self.stats.invalid_updates += 1
                self._refuse(document, f"update refused: {exc.reason}")
                continue
            except UpdateRefused as exc:
                # The room's checks (a client id held here) or a before_apply hook (the
                # author's roles in a federated space, logged and counted there).
                self._refuse(document, f"update refused: {exc.reason}")
                continue
            self.stats.updates_received += 1
        if body.last_seq:
            last = body.last_seq
            self._target.when_durable(lambda: self._send(Ack(last)))
        else:
            # An inventory or an answer: durable before the next frame is read, so a peer
            # sending many of them never has more than one waiting here.
            durable = asyncio.Event()
            self._target.when_durable(durable.set)
            await durable.wait()

    def _check_entry(self, document: str, author: str, update: bytes, *, from_log: bool) -> str | None:
        """Why an entry of a batch is refused before it is applied, or None."""
        try:
            check_document_name(document)
        except ClientError as exc:
            return exc.reason
        if not self._scope.shares(document, self.peer.site_id):
            return "this document's space is not shared with your site"
        author_refusal = bad_author(author)
        if author_refusal is not None:
            return author_refusal
        if author.endswith(f"@{self._identity.site_id}"):
            return "a peer site cannot write as a user of this site"
        # A log row is one client's update at its origin; whole documents come as answers.
        if from_log and len(update) > self._limits.max_update:
            return f"update of {len(update)} bytes, above the {self._limits.max_update} accepted"
        return None

    def _on_inventory_done(self, message: InventoryDone) -> None:
        # Every batch before it is durable already (each was awaited); the ack says so.
        ack = InventoryAck(message.through_seq, message.spaces)
        self._target.when_durable(lambda: self._send(ack))

    async def _on_ack(self, last_seq: int) -> None:
        if last_seq > self.stats.sent_seq:
            raise LinkViolation(f"acknowledged {last_seq}, beyond what was sent ({self.stats.sent_seq})")
        if last_seq <= self.stats.acked_seq:
            return
        await self._store.set_cursor(self.peer.site_id, last_seq)
        self.stats.observe(acked_seq=last_seq)
        while self._in_flight and self._in_flight[0][0] <= last_seq:
            self._in_flight.popleft()
        async with self._window:
            self._window.notify_all()

    def _on_presence(self, message: Presence) -> None:
        if not self._scope.shares(message.document, self.peer.site_id):
            log.warning("site %s sent presence for unshared %r; ignored", self.peer.site_id, message.document)
            return
        try:
            self._target.apply_presence(message.document, message.update, self.peer.site_id)
        except ProtocolError as exc:
            log.warning(
                "site %s sent bad presence for %r: %s", self.peer.site_id, message.document, exc.reason
            )

    async def _on_want(self, message: Want) -> None:
        try:
            check_document_name(message.document)
        except ClientError as exc:
            self._refuse(message.document, exc.reason)
            return
        if not self._scope.shares(message.document, self.peer.site_id):
            self._refuse(message.document, "this document's space is not shared with your site")
            return
        if self._queued > self._limits.send_budget:
            # The peer asks faster than it reads: each answer is a whole document.
            self.stats.wants_refused_busy += 1
            self._refuse(message.document, "busy: too much unread, ask again later")
            return
        try:
            diff = await self._target.diff_for(message.document, message.state_vector)
        except CrdtError as exc:
            self._refuse(message.document, exc.reason)
            return
        except RoomLoadError:
            self._refuse(message.document, "the document could not be read; ask again later")
            return
        answer = BatchEntry(message.document, SERVER_AUTHOR, diff)  # a merged state: many authors
        self._sign_and_send(BatchBody(self._identity.site_id, 0, 0, (answer,)))

    def _refuse(self, document: str, reason: str) -> None:
        self.stats.entries_refused += 1
        # Every refusal is counted; a peer that sends thousands gets a few log lines per minute.
        now = time.monotonic()
        if now - self._refusals_logged_at > REFUSAL_LOG_WINDOW:
            if self._refusals_unlogged:
                log.warning("refused %d more from site %s (not logged one by one)",
                            self._refusals_unlogged, self.peer.site_id)  # fmt: skip
            self._refusals_logged_at, self._refusals_logged, self._refusals_unlogged = now, 0, 0
        if self._refusals_logged < REFUSALS_LOGGED:
            self._refusals_logged += 1
            log.warning("refused %s to/from site %s: %s", shown(document), self.peer.site_id, shown(reason))
        else:
            self._refusals_unlogged += 1
        if self._queued > 2 * self._limits.send_budget:
            raise LinkViolation("the peer does not read what it asked for")
        self._send(Refused(document[:1024], reason))
