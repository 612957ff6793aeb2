"""The rooms of this node: one shared load per document, unload when idle and flushed,
repair of documents whose backplane messages went missing, and the entry points for
updates that do not come from a local client (peer sites, the server itself).

Opening a document (DESIGN.md, "Scale-out within a site"): subscribe to its channel first,
then load it from the store, then ask the other nodes for what they hold that the store
does not yet. Messages that arrive during the load are kept and applied after it, so
nothing falls between the load and the subscription.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from crdt.awareness import UNLIMITED, AwarenessLimits, AwarenessTable
from crdt.document import Document
from crdt.errors import CrdtError
from protocol.backplane import BackplaneKind, BackplaneMessage

from .backplane.ports import Backplane
from .compaction import Compactor
from .control import CONTROL_PREFIX, ControlChannels
from .cpu_pool import CpuPool
from .errors import RoomLoadError, StoreError
from .hooks import Hooks
from .metrics import Counters
from .origins import ServerOrigin, SiteOrigin
from .persistence import UpdateWriter
from .room import Outgoing, Peer, Room
from .store.ports import DocumentStore

__all__ = ["RoomManager"]

log = logging.getLogger(__name__)

# Above this many logged updates, merge them off the event loop before applying.
_MERGE_IN_THREAD_ABOVE = 200

DocumentChange = Callable[[Document], bytes | None]
T = TypeVar("T")


class _ServerPeer:
    """Holds a room open while the server edits it; receives nothing."""

    __slots__ = ()

    def deliver(self, message: Outgoing) -> None:
        pass


class RoomManager:
    def __init__(
        self,
        store: DocumentStore,
        writer: UpdateWriter,
        compactor: Compactor,
        backplane: Backplane,
        counters: Counters,
        *,
        hooks: Hooks | None = None,
        control: ControlChannels | None = None,
        cpu: CpuPool | None = None,
        remote_confirm_timeout: float = 10.0,
        awareness_limits: AwarenessLimits = UNLIMITED,
        awareness_drops: Counter[str] | None = None,
    ) -> None:
        self._awareness_limits = awareness_limits
        self._awareness_drops: Counter[str] = awareness_drops if awareness_drops is not None else Counter()
        self._cpu = cpu or CpuPool()
        self._store = store
        self._writer = writer
        self._compactor = compactor
        self._backplane = backplane
        self._counters = counters
        self.hooks = hooks or Hooks()
        self.control = control or ControlChannels()
        self._remote_confirm_timeout = remote_confirm_timeout
        self._rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Future[Room]] = {}
        self._early: dict[str, list[BackplaneMessage]] = {}
        self._repairs_due: dict[str, None] = {}
        self._repairs_ready = asyncio.Event()
        self.loads = 0
        self.gap_repairs = 0
        self.quarantined = 0  # stored updates set aside because they could not be applied
        writer.add_flush_listener(self._after_flush)
        backplane.set_handlers(self._on_backplane_message, self._on_backplane_reconnect)

    @property
    def rooms(self) -> dict[str, Room]:
        return self._rooms

    # -- joining and leaving -------------------------------------------------------------

    async def join(self, name: str, peer: Peer) -> Room:
        """Attach `peer` to the room of `name`, loading it if needed. Concurrent joiners
        share one load; a failed load raises `RoomLoadError` and opens nothing."""
        while True:
            room = self._rooms.get(name)
            if room is not None:
                room.attach(peer)
                return room
            pending = self._loading.get(name)
            if pending is None:
                await self._load(name)
            else:
                try:
                    await asyncio.shield(pending)
                except asyncio.CancelledError:
                    if pending.cancelled():  # the loading joiner went away; try again ourselves
                        continue
                    raise
            # Loop: the room is in `_rooms` now, unless it was unloaded in between.

    async def _load(self, name: str) -> None:
        future: asyncio.Future[Room] = asyncio.get_running_loop().create_future()
        self._loading[name] = future
        self._early[name] = []
        try:
            await self._backplane.subscribe(name)
            room = await self._read_room(name)
        except BaseException as exc:
            if not self._rooms.get(name):
                self._backplane.unsubscribe(name)
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: joiners re-raise it, no "never retrieved" noise
            raise
        else:
            self._rooms[name] = room
            future.set_result(room)
            for message in self._early.pop(name, []):
                self._receive(room, message)
            room.request_sync()
            self.hooks.loaded(name)
        finally:
            del self._loading[name]
            self._early.pop(name, None)

    async def _read_room(self, name: str) -> Room:
        # Updates this node is writing (e.g. from a site link) may commit after the read.
        unwritten = self._writer.capture(name)
        try:
            document, log_length = await self._read_stored(name)
            for update in unwritten:
                document.apply(update)
        finally:
            self._writer.release(name)
        self.loads += 1
        self._compactor.note_loaded(name, log_length)
        awareness = AwarenessTable(self._awareness_limits, self._awareness_drops)
        return Room(
            name, document, self._writer, self._backplane, self._counters, self.hooks, awareness=awareness
        )

    async def _read_stored(self, name: str) -> tuple[Document, int]:
        """A document holding everything the store holds for `name`, and its log length. A stored
        update the CRDT core refuses is quarantined (see `_quarantine`), not a reason to
        leave the document unloadable."""
        try:
            doc_log = await self._store.load(name)
        except StoreError as exc:
            log.error("loading %r failed: %s", name, exc)
            raise RoomLoadError(f"document {name!r} could not be loaded") from exc
        updates = doc_log.all_updates()
        document = Document()
        try:
            if len(updates) > _MERGE_IN_THREAD_ABOVE:
                updates = [await self._cpu.compact(updates)]
            for update in updates:
                document.apply_unchecked(update)
        except CrdtError:
            document = await self._quarantine(name, doc_log.all_updates())
        return document, len(doc_log.updates)

    async def _quarantine(self, name: str, updates: list[bytes]) -> Document:
        """Find the stored updates of `name` that the CRDT core refuses, set them aside in the
        store, log and count them; returns a document holding all the others. Each refusal
        starts over in a fresh document (a refused update may have been half-applied), so
        this costs one pass per bad row: few, and only on this slow path."""
        bad: list[int] = []
        while True:
            scratch = Document()
            for index, update in enumerate(updates):
                if index in bad:
                    continue
                try:
                    scratch.apply_unchecked(update)
                except CrdtError as exc:
                    bad.append(index)
                    reason = exc.reason
                    break
            else:
                break
            self.quarantined += 1
            log.error(
                "document %r: stored update %d of %d (%d bytes) cannot be applied (%s); "
                "quarantined, the document loads without it",
                name, index + 1, len(updates), len(updates[index]), reason,
            )  # fmt: skip
            try:
                await self._store.quarantine(name, updates[index], reason)
            except StoreError as exc:  # loads without it anyway; tried again at the next load
                log.error("document %r: could not quarantine its bad update: %s", name, exc)
        return scratch

    def leave(self, room: Room, peer: Peer) -> None:
        room.detach(peer)
        self._unload_if_idle(room)

    def _after_flush(self, rows: Counter[str]) -> None:
        self._compactor.note_appended(rows)
        for name in rows:
            room = self._rooms.get(name)
            if room is not None:
                self._unload_if_idle(room)

    def _unload_if_idle(self, room: Room) -> None:
        if room.idle and self._rooms.get(room.name) is room:
            del self._rooms[room.name]
            self._backplane.unsubscribe(room.name)
            self._compactor.forget(room.name)
            self.hooks.unloaded(room.name)
            log.debug("unloaded %r", room.name)

    # -- the server's own edits ----------------------------------------------------------

    async def edit(self, name: str, change: DocumentChange, origin: ServerOrigin) -> bool:
        """Edit `name` as the server: `change(document)` returns the update to make (or
        None), which is stored, published, fanned out and replicated like any other, whether
        or not the document was open on this node. Returns once it is durable; False if
        there was nothing to change."""
        peer = _ServerPeer()
        room = await self.join(name, peer)
        try:
            update = change(room.document)
            if not update:
                return False
            durable: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            changed = room.apply(update, origin, on_durable=lambda: _resolve(durable))
            await durable
            return changed
        finally:
            self.leave(room, peer)

    async def read(self, name: str, look: Callable[[Document], T]) -> T:
        """`look(document)` at `name` as the server, whether or not it was open on this node
        (a document loaded only for this unloads again once idle)."""
        peer = _ServerPeer()
        room = await self.join(name, peer)
        try:
            return look(room.document)
        finally:
            self.leave(room, peer)

    # -- other nodes ---------------------------------------------------------------------

    def _on_backplane_message(self, name: str, message: BackplaneMessage) -> None:
        if name.startswith(CONTROL_PREFIX):
            self.control.dispatch(name, message)
            return
        room = self._rooms.get(name)
        if room is not None:
            self._receive(room, message)
        elif name in self._early:
            self._early[name].append(message)  # loading: applied right after the load

    def _receive(self, room: Room, message: BackplaneMessage) -> None:
        if room.receive_remote(message):
            log.warning("%r: missed backplane messages from %s; repairing", room.name, message.origin)
            self._request_repair(room.name)

    def _on_backplane_reconnect(self) -> None:
        for name in self._rooms:
            self._request_repair(name)

    def _request_repair(self, name: str) -> None:
        self._repairs_due[name] = None
        self._repairs_ready.set()

    async def run_repairs(self) -> None:
        """The repair task: catch a document up from the store and from the other nodes."""
        while True:
            if not self._repairs_due:
                self._repairs_ready.clear()
                await self._repairs_ready.wait()
                continue
            name = next(iter(self._repairs_due))
            del self._repairs_due[name]
            room = self._rooms.get(name)
            if room is None:
                continue
            self.gap_repairs += 1
            try:
                # Updates durable on other nodes are in the store; the rest they still hold.
                scratch, _ = await self._read_stored(name)
                room.apply_stored(scratch.diff(room.document.state_vector()))
            except RoomLoadError:
                log.warning("repair of %r could not read the store; asking the other nodes only", name)
            room.request_sync()

    # -- peer sites ----------------------------------------------------------------------

    async def apply_from_site(self, name: str, update: bytes, site: str, author: str = "") -> bool:
        """Apply an update that arrived over a site link to the document's room, loading it
        if it is not open here, so the update is validated and integrated against the real
        document (`Room.apply`: the same checks as a client's, plus those for sites) before
        it is stored, fanned out and told to the other nodes. True if it brought anything new.
        Raises `CrdtError` for an update that does not decode or integrate, `Refused` for one
        that may not be applied (nothing of either is stored) and `RoomLoadError` when the
        document cannot be read now (nothing is applied; the link should try again later).

        The room stays open until the update is durable (a room unloads only when flushed),
        so a node opening the document meanwhile gets it from this room's catch-up answer."""
        holder = _ServerPeer()
        room = await self.join(name, holder)
        try:
            return room.apply(update, SiteOrigin(site, author))
        finally:
            self.leave(room, holder)

    def apply_site_presence(self, name: str, update: bytes, site: str) -> None:
        room = self._rooms.get(name)
        if room is not None:
            room.apply_site_presence(update, site)
        else:  # other nodes may have it open
            self._backplane.publish(name, BackplaneKind.AWARENESS, update)

    async def diff_for(self, name: str, state_vector: bytes) -> bytes:
        """What a peer at `state_vector` lacks of `name`, from memory or from the store."""
        room = self._rooms.get(name)
        if room is not None:
            return room.document.diff(state_vector)
        document, _ = await self._read_stored(name)
        return document.diff(state_vector)

    # -- housekeeping --------------------------------------------------------------------

    def expire_awareness(self, timeout: float) -> None:
        for room in list(self._rooms.values()):
            room.expire_awareness(timeout)

    def write_stale_unconfirmed(self) -> None:
        """Store remote updates whose origin never confirmed them (it may have died)."""
        for room in list(self._rooms.values()):
            room.write_stale_unconfirmed(self._remote_confirm_timeout)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
