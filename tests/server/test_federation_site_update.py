"""An update from a peer site, accepted by the node holding the link for a document that is
not open there, reaches a room another node of the site opens meanwhile.

Two nodes in this process: their own rooms and writers, one store (the site's database) and
a pub/sub hub between them that behaves like Redis's (a message reaches whoever is
subscribed when it is published; the rest never see it), but delivers at once, so the test
decides the order of events. The link holder's commit is held back so that the other node
opens the document exactly between the update's arrival and its commit: the store does not
have the row yet, and the holder has no room that could answer the catch-up sync. (This was
tests/integration/test_federation.py::test_site_restarted_during_partition_catches_up
failing about 4 runs in 10: the update reached the open room only after a reload.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pycrdt
import pytest

from protocol.backplane import BackplaneKind
from protocol.messages import SyncUpdate
from server.backplane.ports import BackplaneStats, MessageHandler, ReconnectHandler
from server.backplane.sequencing import OutboundSequences
from server.compaction import Compactor
from server.metrics import Counters
from server.persistence import UpdateWriter
from server.room import Outgoing
from server.rooms import RoomManager
from server.store.memory import MemoryStore
from server.store.ports import AppendRow


class Hub:
    def __init__(self) -> None:
        self.subscribers: dict[str, set[HubBackplane]] = {}


class HubBackplane:
    """One node's end of the hub (the Backplane port)."""

    def __init__(self, hub: Hub, node: str) -> None:
        self.node = node
        self.stats = BackplaneStats()
        self._hub = hub
        self._sequences = OutboundSequences(node)
        self._on_message: MessageHandler | None = None

    @property
    def connected(self) -> bool:
        return True

    def set_handlers(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        self._on_message = on_message

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def subscribe(self, name: str) -> None:
        self._hub.subscribers.setdefault(name, set()).add(self)

    def unsubscribe(self, name: str) -> None:
        self._hub.subscribers.get(name, set()).discard(self)

    def publish(self, name: str, kind: BackplaneKind, payload: bytes = b"", target: str = "") -> int:
        message = self._sequences.next(name, kind, payload, target)
        self.stats.published += 1
        for other in self._hub.subscribers.get(name, set()) - {self}:
            assert other._on_message is not None
            other._on_message(name, message)
        return message.seq

    def mark_durable(self, name: str, seq: int) -> None:
        self._sequences.mark_durable(name, seq)

    def drop_next_received(self, count: int) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def close(self) -> None:
        pass


DOC = "eng/restart"


def hi_update() -> bytes:
    return bytes.fromhex("01 01 01 00 04 01 01 74 02 68 69 00")


class HeldStore(MemoryStore):
    """The site's store as the link holder writes to it: appends wait for `release`."""

    def __init__(self, shared: MemoryStore) -> None:
        super().__init__()
        self.shared = shared
        self.appending = asyncio.Event()
        self.release = asyncio.Event()

    async def append(self, rows: Sequence[AppendRow]) -> None:
        self.appending.set()
        await self.release.wait()
        await self.shared.append(rows)


class Client:
    """A peer of a room: notes when it is sent an update."""

    def __init__(self) -> None:
        self.received = asyncio.Event()

    def deliver(self, message: Outgoing) -> None:
        if isinstance(message.message, SyncUpdate):
            self.received.set()


@dataclass
class Node:
    rooms: RoomManager
    writer: UpdateWriter


@pytest.fixture
async def site() -> AsyncIterator[tuple[Node, Node, HeldStore]]:
    store = MemoryStore()
    await store.open()
    held = HeldStore(store)
    await held.open()
    hub = Hub()
    nodes: list[Node] = []
    async with asyncio.TaskGroup() as tasks:
        writers = []
        for name, node_store in (("holder", held), ("other", store)):
            writer = UpdateWriter(node_store)
            compactor = Compactor(node_store, 1000)
            nodes.append(
                Node(RoomManager(node_store, writer, compactor, HubBackplane(hub, name), Counters()), writer)
            )
            writers.append(tasks.create_task(writer.run()))
        yield nodes[0], nodes[1], held
        held.release.set()
        for writer_task in writers:
            writer_task.cancel()


def text_of(rooms: RoomManager) -> str:
    return str(rooms.rooms[DOC].document.ydoc.get("t", type=pycrdt.Text))


async def test_a_site_update_reaches_a_room_opened_before_its_commit(
    site: tuple[Node, Node, HeldStore],
) -> None:
    holder, other, held = site
    await holder.rooms.apply_from_site(DOC, hi_update(), "amsterdam", "ann@amsterdam")  # not open here
    await asyncio.wait_for(held.appending.wait(), 10)  # arrived; its commit is held back
    client = Client()
    room = await other.rooms.join(DOC, client)  # subscribe, load (no row yet), catch up
    # The holder loaded the document to apply the update, and keeps it open until the
    # update is durable: its room answered the catch-up, before the commit.
    assert text_of(other.rooms) == "hi"
    held.release.set()
    await asyncio.wait_for(holder.writer.drain(), 10)
    assert room is other.rooms.rooms[DOC]
    stored = await held.shared.read_log_after(0, 10)
    assert [(row.origin, row.author) for row in stored] == [("amsterdam", "ann@amsterdam")]
