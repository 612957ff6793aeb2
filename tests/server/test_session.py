"""The session seam in process (no sockets, no processes, no Node): the origin policy table,
the one dispatch under each grant, the Hocuspocus pre-auth queue, `before_apply`, the
change feed, and server edits reaching other nodes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pycrdt
import pytest

from crdt.document import Document
from protocol import hocuspocus
from protocol.hocuspocus import Authenticated, AuthToken, PermissionDenied, SyncStatus
from protocol.messages import SyncStep1, SyncStep2, SyncUpdate
from server.auth.ports import ANONYMOUS, Credentials, Grant, Principal
from server.backplane.memory import MemoryHub
from server.close_codes import CloseCode
from server.hocuspocus_endpoint import HocuspocusSocket
from server.hooks import ChangeEvent, Refused, UpdateContext
from server.origins import (
    POLICY,
    ClientOrigin,
    NodeOrigin,
    Publish,
    ServerOrigin,
    SiteOrigin,
    StoreOrigin,
)
from server.registry import Revocation
from server.session import ClientSession
from server.store.sqlite import SQLiteStore

from .nodes import Node, RecordingChannel, RecordingOutbox, running_node

ALICE = Principal("alice@here", "alice")


def typed(text: str, client_id: int, base: bytes | None = None) -> bytes:
    doc: pycrdt.Doc[pycrdt.Text] = pycrdt.Doc(client_id=client_id)
    if base:
        doc.apply_update(base)
    before = doc.get_state()
    doc.get("t", type=pycrdt.Text).insert(0, text)
    return doc.get_update(before)


def content(update_or_doc: bytes | pycrdt.Doc[pycrdt.Text]) -> str:
    doc = update_or_doc
    if isinstance(doc, bytes):
        doc = pycrdt.Doc()
        doc.apply_update(update_or_doc)  # type: ignore[arg-type]
    return str(doc.get("t", type=pycrdt.Text))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "samen.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def node(store: SQLiteStore) -> AsyncIterator[Node]:
    async with running_node(store, MemoryHub().backplane("n1")) as running:
        yield running


async def open_session(
    node: Node, grant: Grant, principal: Principal = ALICE, doc: str = "space/doc"
) -> tuple[ClientSession, RecordingChannel]:
    channel = RecordingChannel()
    session = ClientSession(doc, principal, grant, channel, node.counters)
    room = await node.rooms.join(doc, session)
    session.start(room, lambda _room: None)
    return session, channel


# -- the origin policy table ----------------------------------------------------------------


def test_origin_policy_table() -> None:
    rows = {
        kind.__name__: (p.store, p.publish, p.keep_unconfirmed, p.acknowledge) for kind, p in POLICY.items()
    }
    assert rows == {
        "ClientOrigin": (True, Publish.UPDATE, False, True),
        "ServerOrigin": (True, Publish.UPDATE, False, True),
        "SiteOrigin": (True, Publish.SITE_UPDATE, False, True),
        "NodeOrigin": (False, Publish.NOTHING, True, False),
        "StoreOrigin": (False, Publish.NOTHING, False, False),
    }


async def test_each_origin_is_stored_published_and_held_as_its_row_says(store: SQLiteStore) -> None:
    hub = MemoryHub()
    async with (
        running_node(store, hub.backplane("n1")) as node,
        running_node(store, hub.backplane("n2")) as other,
    ):
        watcher, watched = await open_session(other, Grant.WRITE)
        await open_session(node, Grant.WRITE)
        room = node.rooms.rooms["space/doc"]
        origins = {
            "client": ClientOrigin(object(), "alice@here"),
            "server": ServerOrigin("admin@here"),
            "site": SiteOrigin("berlin", "bob@berlin"),
            "node": NodeOrigin("n3/x", 1, "carol@here"),
            "store": StoreOrigin(),
        }
        for i, (label, origin) in enumerate(origins.items()):
            assert room.apply(typed(label, 100 + i), origin)
        await node.writer.drain()
        stored = content(_load(await store.load("space/doc")))
        assert sorted(stored) == sorted("clientserversite")  # stored by this node: its rows say so
        rows = await store.read_log_after(0, 100)
        assert sorted((row.origin, row.author) for row in rows) == [
            ("", "admin@here"),
            ("", "alice@here"),
            ("berlin", "bob@berlin"),
        ]
        assert room.unconfirmed == 1  # the node's update waits for its origin to confirm it
        # Published to the other nodes: made here, or replicated from a site (with its origin).
        await watched.wait_for(lambda: len(content(other.rooms.rooms["space/doc"].document.ydoc)) == 16)
        assert watcher.room.unconfirmed == 3


def _load(log: object) -> bytes:
    updates = log.all_updates()  # type: ignore[attr-defined]
    doc: pycrdt.Doc[pycrdt.Text] = pycrdt.Doc()
    for update in updates:
        doc.apply_update(update)
    return doc.get_update()


# -- the one dispatch -----------------------------------------------------------------------


async def test_a_read_grant_refuses_updates_and_keeps_the_session(node: Node) -> None:
    writer, _ = await open_session(node, Grant.WRITE, doc="space/doc")
    writer.handle(SyncUpdate(typed("hi", 1)))
    await node.writer.drain()
    reader, channel = await open_session(node, Grant.READ, Principal("viewer@here"))
    before = reader.room.document.state_vector()
    reader.handle(SyncUpdate(typed("nope", 2)))
    assert channel.acks == [False] and channel.closed is None and channel.resyncs == 1
    assert reader.room.document.state_vector() == before
    # A SyncStep2 that adds nothing (the handshake's answer) is accepted, not refused.
    reader.handle(SyncStep2(typed("hi", 1)))
    assert channel.acks == [False, True]
    # A SyncStep2 that would add something is refused, without another resync round.
    reader.handle(SyncStep2(typed("more", 3)))
    assert channel.acks == [False, True, False] and channel.resyncs == 1
    assert content(reader.room.document.ydoc) == "hi"
    assert node.counters.refusals["read_only"] == 2


async def test_a_write_grant_is_acknowledged_once_durable_and_echoed_then(node: Node) -> None:
    session, channel = await open_session(node, Grant.WRITE)
    _, other_channel = await open_session(node, Grant.WRITE, Principal("bob@here"))
    update = typed("hi", 1)
    session.handle(SyncUpdate(update))
    await other_channel.wait_for(lambda: other_channel.updates_delivered())
    await channel.wait_for(lambda: channel.acks == [True] and channel.updates_delivered())
    log = await node.store.load("space/doc")
    assert content(_load(log)) == "hi"  # acknowledged and echoed to the sender: stored


async def test_before_apply_can_refuse(node: Node) -> None:
    seen: list[UpdateContext] = []

    def no_shouting(context: UpdateContext) -> None:
        seen.append(context)
        doc: pycrdt.Doc[pycrdt.Text] = pycrdt.Doc()
        doc.apply_update(context.document.full_update())
        doc.apply_update(context.update)
        if str(doc.get("t", type=pycrdt.Text)).isupper():
            raise Refused("no shouting", kind="shouting")

    node.hooks.add_before_apply(no_shouting)
    session, channel = await open_session(node, Grant.WRITE)
    session.handle(SyncUpdate(typed("HEY", 1)))
    assert channel.acks == [False] and channel.closed is None
    assert content(session.room.document.ydoc) == ""
    assert seen[0].principal == ALICE and seen[0].grant == Grant.WRITE
    session.handle(SyncUpdate(typed("hey", 2)))
    await channel.wait_for(lambda: channel.acks == [False, True])
    assert content(session.room.document.ydoc) == "hey"


async def test_on_change_runs_after_commit_with_the_author(node: Node) -> None:
    events: asyncio.Queue[tuple[ChangeEvent, str]] = asyncio.Queue()

    async def observe(event: ChangeEvent) -> None:
        stored = content(_load(await node.store.load(event.document)))
        events.put_nowait((event, stored))

    node.hooks.add_on_change(observe)
    session, _ = await open_session(node, Grant.WRITE)
    session.handle(SyncUpdate(typed("hi", 1)))
    async with asyncio.timeout(5):
        event, stored_then = await events.get()
    assert (event.document, event.author, stored_then) == ("space/doc", "alice@here", "hi")
    assert isinstance(event.origin, ClientOrigin) and event.origin.session is session


async def test_a_refusal_that_cuts_off_closes_the_session(node: Node) -> None:
    victim, _ = await open_session(node, Grant.WRITE)
    victim.handle(SyncUpdate(typed("mine", 7)))
    attacker, channel = await open_session(node, Grant.WRITE, Principal("mallory@here"))
    attacker.handle(SyncUpdate(typed("squat", 7)))  # the same (client, clock) names, other content
    assert channel.closed is not None and channel.closed[0] == CloseCode.POLICY_VIOLATION
    assert content(victim.room.document.ydoc) == "mine"


# -- Hocuspocus: nothing before the authorizer answers --------------------------------------


class GatedAuthorizer:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.asked: list[str] = []
        self.asked_twice = asyncio.Event()

    async def authenticate(self, credentials: Credentials) -> Principal:
        return Principal(f"{credentials.token}@here") if credentials.token else ANONYMOUS

    async def authorize(self, principal: Principal, document: str) -> Grant:
        self.asked.append(document)
        if len(self.asked) == 2:
            self.asked_twice.set()
        await self.gate.wait()
        return Grant.NONE if document.startswith("secret/") else Grant.WRITE


async def test_hocuspocus_keys_wait_for_the_authorizer(store: SQLiteStore) -> None:
    auth = GatedAuthorizer()
    async with running_node(store, MemoryHub().backplane("n1"), auth, auth) as node:
        outbox = RecordingOutbox()
        async with asyncio.TaskGroup() as tasks:
            socket = HocuspocusSocket(node.services, outbox, Credentials(), "hp#1", tasks)

            def send(key: str, message: hocuspocus.HocuspocusMessage) -> None:
                socket.handle_frame(hocuspocus.encode_frame(key, message))

            send("space/doc", AuthToken("alice"))
            send("space/doc", SyncStep1(b"\x00"))
            send("space/doc", SyncUpdate(typed("hi", 1)))
            send("secret/doc", AuthToken("alice"))
            send("secret/doc", SyncUpdate(typed("leak", 2)))
            async with asyncio.timeout(5):
                await auth.asked_twice.wait()
            assert sorted(auth.asked) == ["secret/doc", "space/doc"]
            assert node.rooms.rooms == {} and outbox.frames == []  # nothing loaded, nothing answered
            auth.gate.set()
            await outbox.wait_for(lambda: SyncStatus(True) in outbox.messages("space/doc"))
            await outbox.wait_for(lambda: outbox.messages("secret/doc"))
            assert outbox.messages("secret/doc") == [PermissionDenied("no access to this document")]
            first = outbox.messages("space/doc")
            assert first[0] == Authenticated("read-write") and isinstance(first[1], SyncStep1)
            assert "secret/doc" not in node.rooms.rooms and outbox.closed is None
            # Frames for the refused key cost nothing more until the provider authenticates again.
            send("secret/doc", SyncUpdate(typed("again", 4)))
            assert len(auth.asked) == 2 and len(outbox.messages("secret/doc")) == 1
            # The refused key does not stop the others.
            send(
                "space/doc",
                SyncUpdate(typed("!", 3, base=node.rooms.rooms["space/doc"].document.full_update())),
            )
            await outbox.wait_for(lambda: outbox.messages("space/doc").count(SyncStatus(True)) == 2)
            assert content(node.rooms.rooms["space/doc"].document.ydoc) == "!hi"
            socket.close_all()
        assert node.rooms.rooms == {} or all(not r.peers for r in node.rooms.rooms.values())


# -- server edits ---------------------------------------------------------------------------


async def test_a_server_edit_reaches_a_client_on_another_node(store: SQLiteStore) -> None:
    hub = MemoryHub()
    async with (
        running_node(store, hub.backplane("n1")) as editor,
        running_node(store, hub.backplane("n2")) as other,
    ):
        session, channel = await open_session(other, Grant.WRITE)
        assert "space/doc" not in editor.rooms.rooms

        def write_hello(document: object) -> bytes:
            doc: pycrdt.Doc[pycrdt.Text] = pycrdt.Doc()
            doc.apply_update(document.full_update())  # type: ignore[attr-defined]
            before = doc.get_state()
            doc.get("t", type=pycrdt.Text).insert(0, "hello")
            return doc.get_update(before)

        assert await editor.rooms.edit("space/doc", write_hello, ServerOrigin("admin@here", "restore"))
        await channel.wait_for(lambda: channel.updates_delivered())
        assert content(session.room.document.ydoc) == "hello"
        assert content(_load(await store.load("space/doc"))) == "hello"  # durable when edit returned
        assert "space/doc" not in editor.rooms.rooms  # the editing node let it go again


# -- revocation -----------------------------------------------------------------------------


class SwitchableAuthorizer:
    """Grants what `grants` says now; a revocation makes the registry ask again."""

    def __init__(self) -> None:
        self.grants: dict[str, Grant] = {}
        self.gate = asyncio.Event()
        self.gate.set()

    async def authenticate(self, credentials: Credentials) -> Principal:
        return Principal(credentials.token) if credentials.token else ANONYMOUS

    async def authorize(self, principal: Principal, document: str) -> Grant:
        await self.gate.wait()
        return self.grants.get(principal.id, Grant.NONE)


async def test_revocation_holds_updates_then_applies_them_under_the_new_grant(store: SQLiteStore) -> None:
    auth = SwitchableAuthorizer()
    hub = MemoryHub()
    auth.grants = {"alice": Grant.WRITE, "bob": Grant.WRITE, "carol": Grant.WRITE}
    async with (
        running_node(store, hub.backplane("n1"), auth, auth) as node,
        running_node(store, hub.backplane("n2"), auth, auth) as other,
    ):
        sessions = {}
        for name, where in (("alice", node), ("bob", node), ("carol", other)):
            channel = RecordingChannel(label=name)
            session = ClientSession("space/doc", Principal(name), Grant.WRITE, channel, where.counters,
                                    Credentials(token=name))  # fmt: skip
            session.start(await where.rooms.join("space/doc", session), lambda _room: None)
            where.registry.add(session)
            sessions[name] = (session, channel)
        # Alice keeps her right to write, Bob becomes a viewer, Carol (on the other node) loses access.
        auth.grants = {"alice": Grant.WRITE, "bob": Grant.READ}
        auth.gate.clear()
        for name in ("alice", "bob", "carol"):
            node.registry.revoke(Revocation(principal=name))
        alice, bob = sessions["alice"][0], sessions["bob"][0]
        alice.handle(SyncUpdate(typed("a", 1)))
        bob.handle(SyncUpdate(typed("b", 2)))
        assert content(alice.room.document.ydoc) == ""  # held, not applied under the old grant
        assert sessions["alice"][1].acks == [] and sessions["bob"][1].acks == []
        auth.gate.set()
        _, carol_channel = sessions["carol"]
        await carol_channel.wait_for(lambda: carol_channel.closed is not None)
        assert carol_channel.closed == (CloseCode.FORBIDDEN, "access to this document was revoked")
        await sessions["alice"][1].wait_for(lambda: sessions["alice"][1].acks == [True])
        assert sessions["bob"][1].acks == [False] and bob.grant == Grant.READ
        assert content(alice.room.document.ydoc) == "a"
        assert node.registry.sessions_downgraded == 1 and other.registry.sessions_closed == 1


async def test_a_known_update_is_acknowledged_only_if_its_content_is_held(node: Node) -> None:
    session, channel = await open_session(node, Grant.WRITE)
    session.handle(SyncUpdate(typed("abc", 5)))
    await channel.wait_for(lambda: channel.acks == [True])
    session.handle(SyncUpdate(typed("abc", 5)))  # the same edit again: held, acknowledged
    await channel.wait_for(lambda: channel.acks == [True, True])
    session.handle(SyncUpdate(typed("xyz", 5)))  # the same names, other content: lost if acknowledged
    assert channel.closed is not None and channel.closed[0] == CloseCode.POLICY_VIOLATION
    assert channel.acks == [True, True] and content(session.room.document.ydoc) == "abc"
    assert node.counters.refusals["conflict"] == 1


def awareness_of(client: int, clock: int, state: str) -> bytes:
    from protocol.awareness import AwarenessEntry, encode_awareness_update

    return encode_awareness_update([AwarenessEntry(client, clock, state)])


async def test_a_client_id_is_one_owners_for_the_document_and_for_presence(node: Node) -> None:
    from protocol.messages import AwarenessMessage

    victim, _ = await open_session(node, Grant.WRITE)
    mallory, channel = await open_session(node, Grant.WRITE, Principal("mallory@here"))
    # The victim writes under 7 first: nobody else may show presence under 7...
    victim.handle(SyncUpdate(typed("mine", 7)))
    mallory.handle(AwarenessMessage(awareness_of(7, 5, '{"user":{"name":"victim?"}}')))
    assert 7 not in victim.room.awareness.states
    # ...and the victim's presence id 8 is nobody else's to write the document under.
    victim.handle(AwarenessMessage(awareness_of(8, 1, '{"user":{"name":"victim"}}')))
    assert 8 in victim.room.awareness.states
    mallory.handle(SyncUpdate(typed("squat", 8)))
    assert channel.closed is not None and channel.closed[0] == CloseCode.POLICY_VIOLATION
    assert content(victim.room.document.ydoc) == "mine"


async def test_presence_says_who_the_connection_is(node: Node) -> None:
    import json

    from protocol.messages import AwarenessMessage

    mallory, _ = await open_session(node, Grant.WRITE, Principal("mallory@here", "Mallory"))
    mallory.handle(
        AwarenessMessage(awareness_of(9, 1, '{"user":{"name":"Alice","color":"#f00"},"cursor":3}'))
    )
    state = json.loads(mallory.room.awareness.states[9])
    assert state == {"user": {"name": "Mallory", "color": "#f00", "id": "mallory@here"}, "cursor": 3}
    anonymous, _ = await open_session(node, Grant.WRITE, ANONYMOUS)
    anonymous.handle(AwarenessMessage(awareness_of(10, 1, '{"user":{"name":"Alice"}}')))
    assert mallory.room.awareness.states[10] == '{"user":{"name":"Alice"}}'  # nobody to vouch for


class SiteTarget:
    """What a link needs from a node (as `Federation` gives it), over an in-process node."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def apply_from_site(self, document: str, update: bytes, origin: str, author: str) -> bool:
        return await self.node.rooms.apply_from_site(document, update, origin, author)

    def when_durable(self, callback: Callable[[], None]) -> None:
        self.node.writer.when_durable(callback)

    def apply_presence(self, document: str, update: bytes, origin: str) -> None:
        self.node.rooms.apply_site_presence(document, update, origin)

    def drop_presence(self, origin: str) -> None:
        pass

    async def diff_for(self, document: str, state_vector: bytes) -> bytes:
        return await self.node.rooms.diff_for(document, state_vector)


async def test_a_server_edit_reaches_a_client_at_a_peer_site(tmp_path: Path) -> None:
    from server.federation.handshake import accept_handshake, dial_handshake
    from server.federation.identity import create_identity
    from server.federation.link import LinkSession, LinkStats
    from server.federation.peers import Peer, ReplicationScope
    from server.store.memory import MemoryStore

    from .test_federation_handshake import pipe

    identities = {site: create_identity(site, tmp_path / f"{site}.pem") for site in ("alpha", "beta")}
    peers = {s: Peer(s, ("ws://127.0.0.1:1/federation",), i.public_key) for s, i in identities.items()}
    stores = {site: MemoryStore() for site in identities}
    for store_ in stores.values():
        await store_.open()
    async with (
        running_node(stores["alpha"], MemoryHub().backplane("a1")) as alpha,
        running_node(stores["beta"], MemoryHub().backplane("b1")) as beta,
    ):
        session, channel = await open_session(beta, Grant.WRITE)  # a client at beta
        dial_end, accept_end = pipe()
        dialed, accepted = await asyncio.gather(
            dial_handshake(dial_end, identities["alpha"], peers["beta"], 1 << 20),
            accept_handshake(accept_end, identities["beta"], {"alpha": peers["alpha"]}, 1 << 20),
        )
        links = []
        for site, other, linked, node in (
            ("alpha", "beta", dialed, alpha),
            ("beta", "alpha", accepted, beta),
        ):
            await stores[site].set_synced_spaces(other, ["space"])
            scope = ReplicationScope({"space": frozenset({other})})
            links.append(
                LinkSession(
                    linked.transport,
                    linked.peer,
                    identities[site],
                    scope,
                    stores[site],
                    SiteTarget(node),
                    LinkStats(),
                    linked.max_frame,
                )
            )
        alpha.writer.add_flush_listener(lambda _rows: links[0].log_advanced())
        async with asyncio.TaskGroup() as tasks:
            runs = [tasks.create_task(link.run()) for link in links]
            assert "space/doc" not in alpha.rooms.rooms

            def write_hello(document: Document) -> bytes:
                doc: pycrdt.Doc[pycrdt.Text] = pycrdt.Doc()
                doc.apply_update(document.full_update())
                before = doc.get_state()
                doc.get("t", type=pycrdt.Text).insert(0, "hello")
                return doc.get_update(before)

            await alpha.rooms.edit("space/doc", write_hello, ServerOrigin("admin@alpha", "import"))
            await channel.wait_for(lambda: channel.updates_delivered())
            assert content(session.room.document.ydoc) == "hello"
            for link in links:
                await link.close(1000, "test over")
            async with asyncio.timeout(10):
                await asyncio.wait(runs)
        rows = await stores["beta"].read_log_after(0, 10)
        assert [(r.origin, r.author) for r in rows] == [("alpha", "admin@alpha")]
