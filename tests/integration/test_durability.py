"""Persistence: a restart keeps every document; `kill -9` keeps every acknowledged edit."""

from __future__ import annotations

import re

import pycrdt
import pytest

from clients.sync_client import SyncClient

from .server_process import SamenServer

pytestmark = pytest.mark.integration


def text_of(client: SyncClient) -> str:
    return str(client.doc.get("t", type=pycrdt.Text))


async def test_kill9_after_a_burst_keeps_every_acknowledged_edit(samen: SamenServer) -> None:
    edits = 400
    async with SyncClient(samen.hocuspocus_url, "burst", protocol="hocuspocus") as writer:
        await writer.wait_synced()
        await writer.wait_acknowledged()  # the handshake's SyncStep2
        handshake_acks = writer.acknowledged
        text = writer.doc.get("t", type=pycrdt.Text)
        for i in range(edits):
            text += f"<{i}>"  # one transaction, one update, one acknowledgement each
        # Kill while acknowledgements are still streaming in.
        await writer.wait_for(lambda: writer.acknowledged - handshake_acks >= edits // 4, timeout=30)
        await samen.kill9()
        acknowledged_edits = writer.acknowledged - handshake_acks
    assert 0 < acknowledged_edits <= edits

    await samen.start()
    async with SyncClient(samen.ws_url, "burst") as reader:
        await reader.wait_synced()
        numbers = [int(n) for n in re.findall(r"<(\d+)>", text_of(reader))]
    # Acknowledgements come in order, so the first `acknowledged_edits` edits must be there,
    # each exactly once, in typing order.
    assert numbers[:acknowledged_edits] == list(range(acknowledged_edits))
    assert numbers == list(range(len(numbers)))


@pytest.mark.parametrize("protocol", ["y-websocket", "hocuspocus"])
async def test_sigterm_restart_keeps_documents(samen: SamenServer, protocol: str) -> None:
    url = samen.ws_url if protocol == "y-websocket" else samen.hocuspocus_url
    async with (
        SyncClient(url, "notes/a", protocol=protocol) as a,  # type: ignore[arg-type]
        SyncClient(url, "notes/b", protocol=protocol) as b,  # type: ignore[arg-type]
    ):
        await a.wait_synced()
        await b.wait_synced()
        a.doc.get("t", type=pycrdt.Text).insert(0, "page a")
        b.doc.get("m", type=pycrdt.Map)["title"] = "page b"
        async with SyncClient(url, "notes/a", protocol=protocol) as probe:  # type: ignore[arg-type]
            await probe.wait_for(lambda: text_of(probe) == "page a")
        async with SyncClient(url, "notes/b", protocol=protocol) as probe:  # type: ignore[arg-type]
            await probe.wait_for(lambda: probe.doc.get("m", type=pycrdt.Map).get("title") == "page b")
        # Stop while both clients are still connected: the server closes them and flushes.
        assert await samen.stop() == 0
        await a.wait_for(a.closed.is_set)
        assert a.close_code == 1012

    await samen.start()
    async with SyncClient(samen.ws_url, "notes/a") as a2, SyncClient(samen.ws_url, "notes/b") as b2:
        await a2.wait_for(lambda: text_of(a2) == "page a")
        await b2.wait_for(lambda: b2.doc.get("m", type=pycrdt.Map).get("title") == "page b")
