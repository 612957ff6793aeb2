"""The thread guard on the document path, in process: a refused update is answered (SyncStatus
false / resync) without a close and reaches no document, store or peer; the index follows
updates of every origin (another node, a server edit) and is rebuilt after an unload."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from crdt.document import Document
from crdt.thread_doc import message_update, read_messages
from protocol.messages import SyncUpdate
from server.auth.ports import Grant, Principal
from server.backplane.memory import MemoryHub
from server.origins import ServerOrigin
from server.session import ClientSession
from server.store.sqlite import SQLiteStore
from server.thread_guard import ThreadGuard

from .nodes import Node, RecordingChannel, running_node

THREAD = "eng/thread/0123456789abcdef"
ANN = Principal("ann@local", "ann")
BOB = Principal("bob@local", "bob")
MOD = Principal("mod@local", "mod")

Edit = Callable[[pycrdt.Array[Any]], None]


def now_ms() -> float:
    return time.time() * 1000.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "samen.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def hub() -> MemoryHub:
    return MemoryHub()


@pytest.fixture
async def node(store: SQLiteStore, hub: MemoryHub) -> AsyncIterator[Node]:
    async with running_node(store, hub.backplane("n1")) as running:
        ThreadGuard(clock_tolerance=300).install(running.hooks)
        yield running


async def join(
    node: Node, principal: Principal, grant: Grant = Grant.WRITE
) -> tuple[ClientSession, RecordingChannel]:
    channel = RecordingChannel()
    session = ClientSession(THREAD, principal, grant, channel, node.counters)
    room = await node.rooms.join(THREAD, session)
    session.start(room, lambda _room: None)
    return session, channel


def made(session: ClientSession, edit: Edit) -> bytes:
    """The update a client with a fresh copy of the room's document makes with `edit`."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.apply_update(session.room.document.full_update())
    before = doc.get_state()
    with doc.transaction():
        edit(doc.get("messages", type=pycrdt.Array))
    return doc.get_update(before)


def post(mid: str, author: str, body: str) -> Edit:
    def edit(messages: pycrdt.Array[Any]) -> None:
        messages.append(pycrdt.Map({
            "id": mid, "author": author, "created": now_ms(), "body": pycrdt.Text(body), "deleted": False,
            "reactions": pycrdt.Map(),
        }))  # fmt: skip

    return edit


def bodies(document: Document) -> list[tuple[str, str]]:
    return [(m["author"], m["body"]) for m in read_messages(document.ydoc)]


async def test_a_refused_update_is_answered_and_reaches_no_one(node: Node) -> None:
    ann, ann_channel = await join(node, ANN)
    bob, bob_channel = await join(node, BOB)
    ann.handle(SyncUpdate(made(ann, post("m1", "ann@local", "hello"))))
    await ann_channel.wait_for(lambda: ann_channel.acks == [True])
    await bob_channel.wait_for(lambda: len(bob_channel.updates_delivered()) == 1)
    stored_before = await node.store.load(THREAD)

    bob.handle(SyncUpdate(made(bob, post("m2", "ann@local", "forged"))))
    bob.handle(SyncUpdate(made(bob, lambda m: m[0]["body"].insert(0, "bob: "))))
    assert bob_channel.acks == [False, False] and bob_channel.resyncs == 2 and bob_channel.closed is None
    assert node.counters.refusals["thread_not_author"] == 2
    bob.handle(SyncUpdate(made(bob, post("m2", "bob@local", "hi ann"))))  # an honest one still goes
    await bob_channel.wait_for(lambda: bob_channel.acks == [False, False, True])
    await node.writer.drain()
    assert bodies(ann.room.document) == [("ann@local", "hello"), ("bob@local", "hi ann")]
    assert len(ann_channel.updates_delivered()) == 2  # bob's reply only, never the refused ones
    assert len((await node.store.load(THREAD)).updates) == len(stored_before.updates) + 1


async def test_the_index_follows_other_nodes_and_server_edits(
    store: SQLiteStore, hub: MemoryHub, node: Node
) -> None:
    async with running_node(store, hub.backplane("n2")) as other:
        ThreadGuard(clock_tolerance=300).install(other.hooks)
        bob, bob_channel = await join(node, BOB)
        bob.handle(SyncUpdate(made(bob, post("m1", "bob@local", "first"))))  # builds n1's index
        await bob_channel.wait_for(lambda: bob_channel.acks == [True])
        ann_there, ann_channel = await join(other, ANN)
        await ann_channel.wait_for(lambda: len(bodies(ann_there.room.document)) == 1)
        ann_there.handle(SyncUpdate(made(ann_there, post("m2", "ann@local", "from n2"))))
        await bob_channel.wait_for(lambda: len(bodies(bob.room.document)) == 2)  # a NodeOrigin update
        # A server edit (a REST post) by cat, on n1.
        message = {"id": "m3", "author": "cat@local", "created": now_ms(), "body": "from REST"}
        await node.rooms.edit(
            THREAD, lambda d: message_update(d.full_update(), message), ServerOrigin("cat@local")
        )
        # n1's index knows who wrote m2 and m3: bob may edit neither, ann may edit hers.
        for i in (1, 2):
            bob.handle(SyncUpdate(made(bob, lambda m, i=i: m[i]["body"].insert(0, "bob: "))))
        assert bob_channel.acks == [True, False, False]
        ann_here, ann_here_channel = await join(node, ANN)
        ann_here.handle(SyncUpdate(made(ann_here, lambda m: m[1]["body"].insert(0, "edited "))))
        await ann_here_channel.wait_for(lambda: ann_here_channel.acks == [True])
        assert bodies(bob.room.document) == [
            ("bob@local", "first"), ("ann@local", "edited from n2"), ("cat@local", "from REST"),
        ]  # fmt: skip


async def test_after_an_unload_the_index_is_built_from_the_stored_thread(node: Node) -> None:
    ann, ann_channel = await join(node, ANN)
    ann.handle(SyncUpdate(made(ann, post("m1", "ann@local", "hello"))))
    await ann_channel.wait_for(lambda: ann_channel.acks == [True])
    node.rooms.leave(ann.room, ann)
    await node.writer.drain()
    assert THREAD not in node.rooms.rooms
    bob, bob_channel = await join(node, BOB)
    bob.handle(SyncUpdate(made(bob, lambda m: m[0].__setitem__("deleted", True))))
    assert bob_channel.acks == [False]
    mod, mod_channel = await join(node, MOD, Grant.MODERATE)
    mod.handle(SyncUpdate(made(mod, lambda m: m[0].__setitem__("hidden", True))))
    await mod_channel.wait_for(lambda: mod_channel.acks == [True])
    assert read_messages(mod.room.document.ydoc)[0]["hidden"] is True


async def test_other_documents_are_not_judged(node: Node) -> None:
    channel = RecordingChannel()
    session = ClientSession("eng/notes", BOB, Grant.WRITE, channel, node.counters)
    session.start(await node.rooms.join("eng/notes", session), lambda _room: None)
    session.handle(SyncUpdate(made(session, post("m1", "ann@local", "anything goes here"))))
    await channel.wait_for(lambda: channel.acks == [True])
