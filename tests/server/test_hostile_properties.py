"""Property (issue 7): arbitrary updates — real ones, mutated, or aimed at another client's
id — sent through the server's path (a client session, its room, the writer, the store)
never raise anything but the bad-input error, never change what a fresh reader sees of
another client's content (every edit of the victim is stored, under its names, with its
content; others may still delete it, as any editor may), and are never acknowledged unless
what they carry is stored."""

from __future__ import annotations

import asyncio
from typing import Any

import pycrdt
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from crdt.document import Document
from crdt.errors import CrdtError
from protocol.errors import ProtocolError
from protocol.messages import SyncStep2, SyncUpdate
from server.auth.ports import Grant, Principal
from server.backplane.memory import MemoryHub
from server.session import ClientSession
from server.store.memory import MemoryStore

from ..crdt.strategies import editing, mutated, rebranded
from .nodes import Node, RecordingChannel, running_node

VICTIM_ID = 3_000_000_001
DOC = "space/doc"


@st.composite
def attacks(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    """Updates from random editing, some mutated, some rebranded as the victim's client id,
    some sent again with changes (the same names, other content)."""
    updates = draw(editing(max_steps=6)).all_updates()
    # Indices wrapped into the list rather than `sampled_from`: how many updates an editing
    # session emits is pycrdt's business, and draw bounds must not depend on it.
    picks = draw(st.lists(st.integers(0, 2**16), min_size=1, max_size=6))
    chosen = [updates[i % len(updates)] for i in picks]
    out: list[tuple[str, bytes]] = []
    for update in chosen:
        how = draw(st.sampled_from(["as is", "mutated", "victim's id", "victim's id, mutated", "again"]))
        if how == "again" and out:
            update = draw(mutated(out[-1][1]))
        if how.startswith("victim"):
            update = rebranded(update, VICTIM_ID)
        if how.endswith("mutated"):
            update = draw(mutated(update))
        out.append((draw(st.sampled_from(["update", "step2"])), update))
    return out


def victim_typing(doc: pycrdt.Doc[Any], text: str) -> bytes:
    before = doc.get_state()
    doc.get("t", type=pycrdt.Text).insert(0, text)
    return doc.get_update(before)


async def session_of(node: Node, name: str) -> tuple[ClientSession, RecordingChannel]:
    channel = RecordingChannel(label=name)
    session = ClientSession(DOC, Principal(f"{name}@here"), Grant.WRITE, channel, node.counters)
    session.start(await node.rooms.join(DOC, session), lambda _room: None)
    return session, channel


async def scenario(attack_list: list[tuple[str, bytes]]) -> None:
    store = MemoryStore()
    await store.open()
    async with running_node(store, MemoryHub().backplane("n1")) as node:
        victim_doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=VICTIM_ID)
        victim, _ = await session_of(node, "victim")
        victim.handle(SyncUpdate(victim_typing(victim_doc, "hello")))
        await node.writer.drain()
        attacker, channel = await session_of(node, "mallory")
        for kind, update in attack_list:
            acks = channel.acks.count(True)
            try:
                attacker.handle(SyncUpdate(update) if kind == "update" else SyncStep2(update))
            except (CrdtError, ProtocolError):
                channel.closed = (1007, "bad input")  # what the endpoint does with it
                event("bad input")
            await node.writer.drain()
            await asyncio.sleep(0)  # callbacks of the commit run on the loop
            if channel.closed is not None and channel.closed[0] != 1007:
                event("cut off")
            elif channel.acks and channel.acks[-1] is False:
                event("refused")
            if channel.acks.count(True) > acks:  # acknowledged: then what it carries is stored
                event("acknowledged")
                rows = {row.update for row in await store.read_log_after(0, 10_000)}
                assert update in rows or attacker.room.document.holds(update), update.hex()
            if channel.closed is not None:
                node.rooms.leave(attacker.room, attacker)
                attacker, channel = await session_of(node, "mallory")
        victim.handle(SyncUpdate(victim_typing(victim_doc, "world ")))
        await node.writer.drain()
        rows = await store.read_log_after(0, 10_000)
    # A fresh reader of what the store holds, keeping deleted items' content to compare it.
    fresh = Document(keep_deleted=True)
    for row in rows:
        fresh.apply_unchecked(row.update)
    # Every edit of the victim is there (none was taken as "already known")...
    assert _clock_of(fresh, VICTIM_ID) == _clock_of_doc(victim_doc, VICTIM_ID)
    # ...with its own content under its own names.
    for row in rows:
        if row.author == "victim@here":
            assert fresh.holds(row.update), row.update.hex()


def _clock_of(document: Document, client: int) -> int:
    from crdt.state_vectors import read_state_vector

    return read_state_vector(document.state_vector()).get(client, 0)


def _clock_of_doc(doc: pycrdt.Doc[Any], client: int) -> int:
    from crdt.state_vectors import read_state_vector

    return read_state_vector(doc.get_state()).get(client, 0)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
@given(attack_list=attacks())
def test_no_update_through_the_server_path_hurts_another_client(attack_list: list[tuple[str, bytes]]) -> None:
    asyncio.run(scenario(attack_list))
