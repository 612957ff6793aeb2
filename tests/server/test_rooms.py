"""Room lifecycle: one shared load, failed loads open nothing, unload only when flushed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pycrdt
import pytest

from server.backplane.local import LocalBackplane
from server.compaction import Compactor
from server.errors import RoomLoadError, StoreUnavailable
from server.hooks import Refused, UpdateContext
from server.metrics import Counters
from server.origins import ClientOrigin, SiteOrigin
from server.persistence import UpdateWriter
from server.room import Outgoing
from server.rooms import RoomManager
from server.store.ports import DocumentLog
from server.store.sqlite import SQLiteStore


class RecordingPeer:
    def __init__(self) -> None:
        self.received: list[Outgoing] = []

    def deliver(self, message: Outgoing) -> None:
        self.received.append(message)


class CountingStore(SQLiteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.loads = 0
        self.release = asyncio.Event()
        self.release.set()
        self.fail_loads = False

    async def load(self, name: str) -> DocumentLog:
        self.loads += 1
        await self.release.wait()
        if self.fail_loads:
            raise StoreUnavailable("database down")
        return await super().load(name)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[CountingStore, UpdateWriter, RoomManager]]:
    store = CountingStore(tmp_path / "db.sqlite3")
    await store.open()
    writer = UpdateWriter(store)
    rooms = RoomManager(store, writer, Compactor(store, threshold=1000), LocalBackplane("test"), Counters())
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(writer.run())
        yield store, writer, rooms
        task.cancel()
    await store.close()


def hi_update() -> bytes:
    return bytes.fromhex("01 01 01 00 04 01 01 74 02 68 69 00")


async def test_concurrent_joiners_share_one_load(
    env: tuple[CountingStore, UpdateWriter, RoomManager],
) -> None:
    store, _, rooms = env
    store.release.clear()
    peers = [RecordingPeer() for _ in range(5)]
    joins = [asyncio.create_task(rooms.join("doc", p)) for p in peers]
    await asyncio.sleep(0)
    store.release.set()
    joined = await asyncio.gather(*joins)
    assert store.loads == 1
    assert all(room is joined[0] for room in joined)
    assert joined[0].peers == set(peers)


async def test_failed_load_opens_nothing(env: tuple[CountingStore, UpdateWriter, RoomManager]) -> None:
    store, _, rooms = env
    store.fail_loads = True
    with pytest.raises(RoomLoadError):
        await rooms.join("doc", RecordingPeer())
    assert "doc" not in rooms.rooms
    store.fail_loads = False
    room = await rooms.join("doc", RecordingPeer())
    assert "doc" in rooms.rooms and room.name == "doc"


async def test_room_unloads_only_when_empty_and_flushed(
    env: tuple[CountingStore, UpdateWriter, RoomManager],
) -> None:
    _, writer, rooms = env
    peer = RecordingPeer()
    room = await rooms.join("doc", peer)
    durable = asyncio.Event()
    assert room.apply(hi_update(), ClientOrigin(peer, ""), on_durable=durable.set)
    rooms.leave(room, peer)
    if not durable.is_set():
        assert "doc" in rooms.rooms  # still holds an unflushed update
    await writer.drain()
    assert durable.is_set() and "doc" not in rooms.rooms
    reloaded = await rooms.join("doc", RecordingPeer())
    assert str(reloaded.document.ydoc.get("t", type=pycrdt.Text)) == "hi"


async def test_site_updates_meet_the_hooks_whether_the_room_is_open_or_not(
    env: tuple[CountingStore, UpdateWriter, RoomManager],
) -> None:
    store, writer, rooms = env
    seen: list[tuple[str, bool]] = []

    def refuse_sites(context: UpdateContext) -> None:
        seen.append((context.document_name, context.document is not None))
        if isinstance(context.origin, SiteOrigin):
            raise Refused("not from there", kind="site_test")

    rooms.hooks.add_before_apply(refuse_sites)
    room = await rooms.join("open/doc", RecordingPeer())
    for name in ("open/doc", "closed/doc"):
        with pytest.raises(Refused):
            await rooms.apply_from_site(name, hi_update(), "berlin", "mallory@berlin")
    # A closed document is loaded for the update (validated against the real document), so
    # the hooks see a document either way.
    assert seen == [("open/doc", True), ("closed/doc", True)]
    assert "closed/doc" not in rooms.rooms  # and closed again
    await writer.drain()
    assert (await store.load("closed/doc")).updates == [] and (await store.load("open/doc")).updates == []
    assert room.document.state_vector() == b"\x00"  # nothing applied to the open one
