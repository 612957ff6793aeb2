"""Unmodified npm Yjs clients against a real Samen process: y-websocket 3.1 and the
Hocuspocus providers 2.x, 3.x and 4.x (tests/js/driver.mjs runs them in Node)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from .server_process import SamenServer
from .yjs_driver import (
    Client,
    ClientKind,
    YjsDriver,
    array_push,
    awareness_names,
    doc_content,
    doc_state,
    map_set,
    text_insert,
    wait_all,
    wait_converged,
    xml_insert_paragraph,
)

pytestmark = pytest.mark.integration

KINDS: list[ClientKind] = ["y-websocket", "hocuspocus-v2", "hocuspocus-v3", "hocuspocus-v4"]


@pytest.fixture
async def driver() -> AsyncIterator[YjsDriver]:
    async with YjsDriver() as d:
        yield d
        assert d.uncaught_errors() == [], d.stderr_text()


def url_for(server: SamenServer, kind: ClientKind) -> str:
    return server.ws_url if kind == "y-websocket" else server.hocuspocus_url


async def connect(
    driver: YjsDriver,
    server: SamenServer,
    cid: str,
    kind: ClientKind,
    docs: list[str],
    user: str | None = None,
) -> Client:
    client = await driver.connect(cid, kind, url_for(server, kind), docs, user=user or cid)
    await client.wait_synced()
    return client


def all_acknowledged(doc: str) -> Any:
    def check(snapshot: dict[str, Any]) -> bool:
        state = doc_state(snapshot, doc)
        return state["unsynced"] == 0 and state["hasUnsyncedChanges"] is False

    return check


@pytest.mark.parametrize("kind", KINDS)
async def test_three_clients_converge_late_joiner_and_presence(
    samen: SamenServer, driver: YjsDriver, kind: ClientKind
) -> None:
    doc = "wiki/page-1"
    clients = [await connect(driver, samen, name, kind, [doc]) for name in ("ann", "bob", "cas")]

    # Concurrent edits of every shared type, none waiting for the others.
    for i, client in enumerate(clients):
        await client.edit(
            doc,
            [
                text_insert(f"[{client.cid}]", 0),
                map_set(client.cid, i),
                array_push([client.cid]),
                xml_insert_paragraph(f"para by {client.cid}", 0),
            ],
        )
    content = await wait_converged(clients, doc)
    text = content["text"]["t"]
    assert sorted(text.replace("]", "] ").split()) == ["[ann]", "[bob]", "[cas]"]
    assert content["map"] == {"ann": 0, "bob": 1, "cas": 2}
    assert sorted(content["array"]) == ["ann", "bob", "cas"]
    for name in ("ann", "bob", "cas"):
        assert f"para by {name}" in content["xml"]

    if kind != "y-websocket":
        await wait_all(clients, all_acknowledged(doc), what="hasUnsyncedChanges cleared")

    late = await connect(driver, samen, "dan", kind, [doc])
    assert doc_content(late.state, doc) == content or (await wait_converged([*clients, late], doc)) == content

    # Presence: everyone sees everyone else.
    everyone = ["ann", "bob", "cas", "dan"]
    for client in [*clients, late]:
        others = [n for n in everyone if n != client.cid]
        await client.wait_for(lambda s, o=others: awareness_names(s, doc) == o, what=f"sees {others}")

    # A graceful close and an abrupt kill both remove the presence at once.
    await clients[0].disconnect()
    await clients[1].kill()
    for client in (clients[2], late):
        others = [n for n in ("cas", "dan") if n != client.cid]
        await client.wait_for(lambda s, o=others: awareness_names(s, doc) == o, what="ann and bob gone")


@pytest.mark.parametrize("kind", KINDS)
async def test_two_clients_converge_on_conflicting_edits(
    samen: SamenServer, driver: YjsDriver, kind: ClientKind
) -> None:
    doc = "conflicts"
    a = await connect(driver, samen, "a", kind, [doc])
    b = await connect(driver, samen, "b", kind, [doc])
    for round_ in range(20):
        await a.edit(doc, [text_insert(f"a{round_}", 0), map_set("k", f"a{round_}")])
        await b.edit(doc, [text_insert(f"b{round_}", 0), map_set("k", f"b{round_}")])
    content = await wait_converged([a, b], doc)
    assert len(content["text"]["t"]) == sum(len(f"a{i}") * 2 for i in range(20))
    assert content["map"]["k"] in {"a19", "b19"}


@pytest.mark.parametrize("kind", ["hocuspocus-v2", "hocuspocus-v3", "hocuspocus-v4"])
async def test_two_documents_on_one_hocuspocus_socket(
    samen: SamenServer, driver: YjsDriver, kind: ClientKind
) -> None:
    docs = ["space/one", "space/two"]
    a = await connect(driver, samen, "a", kind, docs)
    b = await connect(driver, samen, "b", kind, docs)
    await a.edit("space/one", [text_insert("first")])
    await b.edit("space/two", [text_insert("second")])
    one = await wait_converged([a, b], "space/one")
    two = await wait_converged([a, b], "space/two")
    assert one["text"]["t"] == "first" and two["text"]["t"] == "second"
    for doc in docs:
        await wait_all([a, b], all_acknowledged(doc), what=f"{doc} acknowledged")
        await a.wait_for(lambda s, d=doc: awareness_names(s, d) == ["b"], what=f"b present on {doc}")


async def test_mixed_protocols_share_one_document(samen: SamenServer, driver: YjsDriver) -> None:
    doc = "shared"
    clients = [await connect(driver, samen, kind, kind, [doc]) for kind in KINDS]
    for client in clients:
        await client.edit(doc, [map_set(client.cid, True)])
    content = await wait_converged(clients, doc)
    assert content["map"] == {kind: True for kind in KINDS}
    for client in clients:
        others = sorted(k for k in KINDS if k != client.cid)
        await client.wait_for(lambda s, o=others: awareness_names(s, doc) == o, what="sees the others")


async def test_restart_keeps_what_node_clients_wrote(samen: SamenServer, driver: YjsDriver) -> None:
    writer = await connect(driver, samen, "writer", "hocuspocus-v4", ["kept"])
    await writer.edit("kept", [text_insert("survives a restart"), xml_insert_paragraph("and so does this")])
    await writer.wait_for(all_acknowledged("kept"), what="acknowledged")
    await writer.disconnect()
    assert await samen.stop() == 0
    await samen.start()
    reader = await connect(driver, samen, "reader", "y-websocket", ["kept"])
    state = doc_state(reader.state, "kept")
    assert state["text"]["t"] == "survives a restart"
    assert "and so does this" in state["xml"]
