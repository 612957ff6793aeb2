"""The rooms of this node: one shared load per document, unload when idle and flushed."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from crdt.compaction import compact
from crdt.document import Document
from crdt.errors import CrdtError

from .compaction import Compactor
from .errors import RoomLoadError, StoreError
from .persistence import UpdateWriter
from .room import Peer, Room
from .store.ports import DocumentStore

__all__ = ["RoomManager"]

log = logging.getLogger(__name__)

# Above this many logged updates, merge them off the event loop before applying.
_MERGE_IN_THREAD_ABOVE = 200


class RoomManager:
    def __init__(self, store: DocumentStore, writer: UpdateWriter, compactor: Compactor) -> None:
        self._store = store
        self._writer = writer
        self._compactor = compactor
        self._rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Future[Room]] = {}
        self.loads = 0
        writer.add_flush_listener(self._after_flush)

    @property
    def rooms(self) -> dict[str, Room]:
        return self._rooms

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
                except RoomLoadError:
                    raise
                except asyncio.CancelledError:
                    if pending.cancelled():  # the loading joiner went away; try again ourselves
                        continue
                    raise
            # Loop: the room is in `_rooms` now, unless it was unloaded in between.

    async def _load(self, name: str) -> None:
        future: asyncio.Future[Room] = asyncio.get_running_loop().create_future()
        self._loading[name] = future
        try:
            room = await self._read_room(name)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: joiners re-raise it, no "never retrieved" noise
            raise
        else:
            self._rooms[name] = room
            future.set_result(room)
        finally:
            del self._loading[name]

    async def _read_room(self, name: str) -> Room:
        try:
            doc_log = await self._store.load(name)
        except StoreError as exc:
            log.error("loading %r failed: %s", name, exc)
            raise RoomLoadError(f"document {name!r} could not be loaded") from exc
        updates = doc_log.all_updates()
        document = Document()
        try:
            if len(updates) > _MERGE_IN_THREAD_ABOVE:
                updates = [await asyncio.to_thread(compact, updates)]
            for update in updates:
                document.apply(update)
        except CrdtError as exc:
            log.error("document %r has an undecodable stored update: %s", name, exc.reason)
            raise RoomLoadError(f"document {name!r} could not be loaded") from exc
        self.loads += 1
        self._compactor.note_loaded(name, len(doc_log.updates))
        return Room(name, document, self._writer)

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
            self._compactor.forget(room.name)
            log.debug("unloaded %r", room.name)

    def expire_awareness(self, timeout: float) -> None:
        for room in list(self._rooms.values()):
            room.expire_awareness(timeout)
