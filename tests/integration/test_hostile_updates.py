"""Nobody can make another client's edits vanish (issue 7, point 1): hand-made updates that
aim at a real npm client's client id are refused, the victim is never closed, and every edit
it makes is stored and seen by a fresh reader after a restart."""

from __future__ import annotations

import asyncio

import pycrdt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clients.sync_client import SyncClient
from protocol import hocuspocus, ywebsocket
from protocol.hocuspocus import AuthToken
from protocol.lib0 import Encoder
from protocol.messages import SyncUpdate

from .server_process import SamenServer
from .yjs_driver import ClientKind, YjsDriver, doc_text, text_insert

pytestmark = pytest.mark.integration

DOC = "space/victim"


def gc_struct(client: int, clock: int, length: int) -> bytes:
    """One GC struct: a few bytes that claim `length` clocks of `client`."""
    return Encoder().write_var_uint(1).write_var_uint(1).write_var_uint(client).write_var_uint(clock) \
        .write_raw(b"\x00").write_var_uint(length).write_var_uint(0).to_bytes()  # fmt: skip


def text_item(client: int, clock: int, text: str) -> bytes:
    """One string item at the start of the root text "t", named (client, clock)."""
    encoder = Encoder().write_var_uint(1).write_var_uint(1).write_var_uint(client).write_var_uint(clock)
    encoder.write_raw(b"\x04").write_var_uint(1).write_var_string("t").write_var_string(text)
    return encoder.write_var_uint(0).to_bytes()


def delete_range(client: int, clock: int, length: int) -> bytes:
    """No structs; a delete set covering `client`'s clocks [clock, clock + length)."""
    return Encoder().write_var_uint(0).write_var_uint(1).write_var_uint(client).write_var_uint(1) \
        .write_var_uint(clock).write_var_uint(length).to_bytes()  # fmt: skip


async def attack(samen: SamenServer, protocol: str, update: bytes) -> int:
    """Send `update` as a live update from a fresh connection; the close code it gets."""
    if protocol == "y-websocket":
        url, frames = f"{samen.ws_url}/{DOC}", [ywebsocket.encode(SyncUpdate(update))]
    else:
        url = samen.hocuspocus_url
        frames = [hocuspocus.encode_frame(DOC, m) for m in (AuthToken("mallory"), SyncUpdate(update))]
    async with connect(url, max_size=None) as ws:
        for frame in frames:
            await ws.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):  # a server that lets the update through fails here
                while True:
                    await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


@pytest.mark.parametrize("kind", ["y-websocket", "hocuspocus-v4"])
async def test_no_update_can_take_another_clients_clocks(samen: SamenServer, kind: ClientKind) -> None:
    url = samen.ws_url if kind == "y-websocket" else samen.hocuspocus_url
    protocol = "y-websocket" if kind == "y-websocket" else "hocuspocus"
    async with YjsDriver() as driver:
        victim = await driver.connect("victim", kind, url, [DOC])
        await victim.wait_synced()
        await victim.edit(DOC, [text_insert("abc")])
        async with SyncClient(url, DOC, protocol=protocol) as reader:  # type: ignore[arg-type]
            await reader.wait_for(lambda: str(reader.doc.get("t", type=pycrdt.Text)) == "abc")
        cid = victim.state["docs"][DOC]["clientID"]
        attacks = {
            "a struct at clock 2^32": (gc_struct(cid, 2**32, 1), {1007}),
            "a struct whose end passes 2^32": (gc_struct(cid, 2**32 - 2, 5), {1007}),
            "a GC of a million of the victim's next clocks": (gc_struct(cid, 3, 1_000_000), {1008}),
            "a struct waiting at the victim's clock + 5": (text_item(cid, 8, "x"), {1008}),
            "the victim's own names with other content": (text_item(cid, 0, "zzz"), {1008}),
            "a deletion of the victim's next million clocks": (delete_range(cid, 3, 1_000_000), {1007, 1008}),
        }
        for what, (update, codes) in attacks.items():
            code = await attack(samen, protocol, update)
            assert code in codes, f"{what}: closed with {code}"
        await victim.edit(DOC, [text_insert("def", index=3)])
        if kind != "y-websocket":
            await victim.wait_for(lambda s: s["docs"][DOC]["unsynced"] == 0, what="every edit acknowledged")
        async with SyncClient(url, DOC, protocol=protocol) as reader:  # type: ignore[arg-type]
            await reader.wait_for(lambda: str(reader.doc.get("t", type=pycrdt.Text)) == "abcdef")
        snapshot = await victim.snapshot()
        assert not snapshot["closed"] and snapshot["docs"][DOC]["status"] == "connected"
        assert doc_text(snapshot, DOC) == "abcdef"
    await samen.restart()
    async with SyncClient(url, DOC, protocol=protocol) as fresh:  # type: ignore[arg-type]
        await fresh.wait_synced()
        assert str(fresh.doc.get("t", type=pycrdt.Text)) == "abcdef"
    assert "Traceback" not in samen.log_text()
