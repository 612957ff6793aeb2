"""The inventory: at its first link-up, a peer gets whole the spaces newly shared with it.

The log after a peer's cursor holds only what compaction kept for that peer, and compaction
kept nothing for a peer that was not configured yet (or for a space not yet shared with it).
So for each shared space the peer does not hold whole (`ReplicationLog.synced_spaces`), the
link sends every document of the space, each as its merged state, then INVENTORY_DONE; the
peer answers INVENTORY_ACK once all of it is durable, and the space is recorded as held.

Bounded in memory: documents are read one page of names at a time and sent one batch at a
time; the next batch waits until the previous one has left the outbox (and the receiver
makes each 0..0 batch durable before it reads the next frame).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from crdt.errors import CrdtError
from protocol.sitelink import BatchBody, BatchEntry, InventoryAck, InventoryDone, SiteLinkMessage

from ..errors import RoomLoadError
from ..store.ports import SERVER_AUTHOR, ReplicationLog
from .handshake import LinkViolation
from .peers import ReplicationScope
from .stats import LinkStats

__all__ = ["EMPTY_STATE_VECTOR", "InventorySender"]

log = logging.getLogger(__name__)

EMPTY_STATE_VECTOR = b"\x00"  # "I have nothing": the answer is the whole document
NAMES_PER_PAGE = 100
INVENTORY_BATCH_BYTES = 1024 * 1024  # small documents travel together, up to this much


@dataclass(slots=True)
class InventorySender:
    peer: str
    site: str  # this site's id: the origin of the batches
    store: ReplicationLog
    scope: ReplicationScope
    full_state: Callable[[str], Awaitable[bytes]]
    send_batch: Callable[[BatchBody], None]
    send: Callable[[SiteLinkMessage], None]
    drained: Callable[[], Awaitable[None]]
    stats: LinkStats
    _pending: frozenset[str] = frozenset()
    _covers_log_through: int = 0  # a new peer's inventory stands for the log up to here

    async def run(self, acked: int) -> int:
        """Send what the peer lacks; returns the seq after which the log is still needed:
        `acked`, or the inventory's seq if the peer held no shared space (a new peer: the
        inventory holds everything of the log up to it)."""
        shared = self.scope.spaces_shared_with(self.peer)
        held = await self.store.synced_spaces(self.peer)
        if held - shared:  # no longer shared: sent whole again should it be shared again
            held &= shared
            await self.store.set_synced_spaces(self.peer, held)
        missing = sorted(shared - held)
        if not missing:
            return acked
        through = await self.store.last_seq()
        log.info("sending %s the spaces %s whole (as of seq %d)", self.peer, ", ".join(missing), through)
        for space in missing:
            await self._send_space(space)
        self._pending = frozenset(missing)
        self.send(InventoryDone(through, tuple(missing)))
        if held:
            return acked
        self._covers_log_through = through
        return max(acked, through)

    async def _send_space(self, space: str) -> None:
        entries: list[BatchEntry] = []
        size = 0
        after = ""
        while names := await self.store.list_documents(f"{space}/", after, NAMES_PER_PAGE):
            after = names[-1]
            for name in names:
                try:
                    state = await self.full_state(name)
                except (CrdtError, RoomLoadError) as exc:
                    # Counted and logged; the peer may ask for it (WANT) once it loads again.
                    self.stats.inventory_failures += 1
                    log.error("inventory for %s: cannot read %r: %s", self.peer, name, exc)
                    continue
                entries.append(BatchEntry(name, SERVER_AUTHOR, state))  # merged: many authors
                size += len(state)
                self.stats.inventory_documents_sent += 1
                if size >= INVENTORY_BATCH_BYTES:
                    await self._flush(entries)
                    entries, size = [], 0
        if entries:
            await self._flush(entries)

    async def _flush(self, entries: list[BatchEntry]) -> None:
        self.send_batch(BatchBody(self.site, 0, 0, tuple(entries)))
        await self.drained()

    async def acknowledged(self, ack: InventoryAck) -> None:
        if not ack.spaces or not set(ack.spaces) <= self._pending:
            raise LinkViolation(f"acknowledged an inventory of {list(ack.spaces)} that was not sent")
        self._pending -= set(ack.spaces)
        held = await self.store.synced_spaces(self.peer)
        await self.store.set_synced_spaces(self.peer, held | set(ack.spaces))
        if self._covers_log_through and not self._pending:
            # The peer holds every shared row up to there: as if it had acknowledged them.
            await self.store.set_cursor(self.peer, self._covers_log_through)
            self.stats.observe(acked_seq=self._covers_log_through)
        log.info("%s holds the spaces %s whole", self.peer, ", ".join(sorted(ack.spaces)))
