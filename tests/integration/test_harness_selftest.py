"""Self-test of the integration harness (tests/js/driver.mjs + yjs_driver.py); needs no Samen server.

1. Clients pointed at a closed port: snapshots, local edits, error replies.
2. `disconnect` versus `kill`, checked on the wire by a small recording WebSocket server: a
   graceful disconnect sends the awareness removal and a close frame; a kill sends neither.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .yjs_driver import (
    CLIENT_KINDS,
    ClientKind,
    DriverError,
    YjsDriver,
    array_push,
    doc_state,
    doc_text,
    map_set,
    text_delete,
    text_insert,
    xml_insert_paragraph,
)

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
    return port


async def test_snapshot_local_edits_and_errors() -> None:
    port = closed_port()
    async with YjsDriver() as driver:
        a = await driver.connect("a", "y-websocket", f"ws://{LOOPBACK}:{port}/ws", ["doc"], user="Ann")

        snap = await a.snapshot()
        assert snap["cid"] == "a"
        assert snap["kind"] == "y-websocket"
        assert snap["closed"] is False
        d = doc_state(snap, "doc")
        assert d["synced"] is False
        assert d["status"] in ("connecting", "disconnected")
        assert d["unsynced"] is None and d["authenticated"] is None
        assert d["text"] == {"t": ""} and d["map"] == {} and d["array"] == [] and d["xml"] == ""
        assert d["awareness"] == {}
        assert isinstance(d["clientID"], int)

        await a.edit(
            "doc",
            [
                text_insert("hello world"),
                text_delete(5, 6),
                map_set("k", {"b": [1, 2], "a": None}),
                map_set("n", 1.5),
                array_push([1, "two", {"three": 3}]),
                {"type": "array-insert", "name": "a", "index": 0, "values": [0]},
                {"type": "array-delete", "name": "a", "index": 1, "length": 1},
                xml_insert_paragraph("first"),
                xml_insert_paragraph("second", index=1),
                {"type": "xml-delete", "name": "default", "index": 0, "length": 1},
                {"type": "map-set", "name": "m", "key": "gone", "value": True},
                {"type": "map-delete", "name": "m", "key": "gone"},
            ],
        )
        # The state event caused by a command arrives before its reply: no waiting needed.
        pushed = a.state
        assert doc_text(pushed, "doc") == "hello"
        assert doc_state(pushed, "doc")["map"] == {"k": {"a": None, "b": [1, 2]}, "n": 1.5}
        assert doc_state(pushed, "doc")["array"] == [0, "two", {"three": 3}]
        assert doc_state(pushed, "doc")["xml"] == "<paragraph>second</paragraph>"
        assert await a.snapshot() == pushed

        # Another Y.Text root becomes part of the snapshot once an op has used it.
        await a.edit("doc", [text_insert("x", name="title")])
        got = await a.wait_for(lambda s: doc_text(s, "doc", "title") == "x", timeout=10, what="title root")
        assert doc_text(got, "doc") == "hello"

        await a.set_awareness("doc", {"user": {"name": "Ann"}, "cursor": 3})
        await a.set_awareness("doc", None)

        # Every kind loads and can be created; Hocuspocus clients take several docs on one socket.
        hp_url = f"ws://{LOOPBACK}:{port}/hocuspocus"
        for kind in CLIENT_KINDS[1:]:
            c = await driver.connect(f"c-{kind}", kind, hp_url, ["d1", "d2"], user="Cy")
            s = await c.snapshot()
            assert sorted(s["docs"]) == ["d1", "d2"]
            assert doc_state(s, "d1")["unsynced"] is not None
            assert doc_state(s, "d1")["clientID"] != doc_state(s, "d2")["clientID"]

        # Bad commands and bad arguments give error replies; the driver keeps going.
        bad_calls: list[tuple[str, dict[str, Any]]] = [
            ("no-such-command", {}),
            ("snapshot", {"cid": "nobody"}),
            ("edit", {"cid": "a", "doc": "doc", "ops": [{"type": "text-explode"}]}),
            ("edit", {"cid": "a", "doc": "doc", "ops": [{"type": "text-insert", "index": -1, "value": "x"}]}),
            ("edit", {"cid": "a", "doc": "missing", "ops": []}),
            ("awareness", {"cid": "a", "doc": "doc", "state": [1, 2]}),
            ("connect", {"cid": "a", "kind": "y-websocket", "url": hp_url, "docs": ["doc"]}),
            ("connect", {"cid": "z", "kind": "carrier-pigeon", "url": hp_url, "docs": ["doc"]}),
            ("connect", {"cid": "z", "kind": "y-websocket", "url": hp_url, "docs": ["x", "y"]}),
        ]
        for cmd, args in bad_calls:
            with pytest.raises(DriverError):
                await driver.command(cmd, **args)
        assert doc_text(await a.snapshot(), "doc") == "hello"  # the rejected edits changed nothing

        await a.disconnect()
        closed = await a.wait_for(lambda s: s["closed"], timeout=10, what="closed after disconnect")
        assert doc_state(closed, "doc")["status"] == "disconnected"
        await driver.client("c-hocuspocus-v3").kill()
        assert (await driver.client("c-hocuspocus-v3").snapshot())["closed"] is True
        with pytest.raises(DriverError):
            await a.disconnect()  # already closed

        assert await driver.command("ping") == "pong"
        assert driver.uncaught_errors() == []
    assert driver.returncode == 0


# -- disconnect versus kill, seen from the server side --------------------------------------------


def read_var_uint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def read_var_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = read_var_uint(buf, pos)
    if pos + length > len(buf):
        raise ValueError("truncated")
    return buf[pos : pos + length], pos + length


def awareness_entries(frame: bytes, hocuspocus: bool) -> list[tuple[int, int, Any]]:
    """(clientID, clock, state) of an awareness frame of either protocol; [] for other frames."""
    pos = 0
    if hocuspocus:
        _name, pos = read_var_bytes(frame, pos)
    msg_type, pos = read_var_uint(frame, pos)
    if msg_type != 1:
        return []
    update, _ = read_var_bytes(frame, pos)
    count, p = read_var_uint(update, 0)
    entries = []
    for _ in range(count):
        client_id, p = read_var_uint(update, p)
        clock, p = read_var_uint(update, p)
        state, p = read_var_bytes(update, p)
        entries.append((client_id, clock, json.loads(state.decode())))
    return entries


@dataclass
class Recorded:
    hocuspocus: bool
    frames: list[bytes] = field(default_factory=list)
    got_awareness: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    close_frame_received: bool = False

    def awareness(self) -> list[tuple[int, int, Any]]:
        return [e for f in self.frames for e in awareness_entries(f, self.hocuspocus)]


@pytest.mark.parametrize("kind", CLIENT_KINDS)
@pytest.mark.parametrize("how", ["disconnect", "kill"])
async def test_disconnect_and_kill_on_the_wire(kind: ClientKind, how: str) -> None:
    """Graceful disconnect: awareness removal + close frame. Kill: neither (the server must clean up)."""
    hocuspocus = kind != "y-websocket"
    connections: list[Recorded] = []
    first = asyncio.Event()

    async def record(conn: ServerConnection) -> None:
        rec = Recorded(hocuspocus)
        connections.append(rec)
        first.set()
        try:
            async for message in conn:
                if isinstance(message, bytes):
                    rec.frames.append(message)
                    if any(state is not None for _, _, state in awareness_entries(message, hocuspocus)):
                        rec.got_awareness.set()
        except ConnectionClosed:
            pass
        finally:
            rec.close_frame_received = conn.protocol.close_rcvd is not None
            rec.ended.set()

    async with serve(record, LOOPBACK, 0) as server:
        port = server.sockets[0].getsockname()[1]
        path = "/hocuspocus" if hocuspocus else "/ws"
        async with YjsDriver() as driver:
            client = await driver.connect("x", kind, f"ws://{LOOPBACK}:{port}{path}", ["doc"], user="Xena")
            async with asyncio.timeout(15):
                await first.wait()
                rec = connections[0]
                await rec.got_awareness.wait()
            if how == "kill":
                await client.kill()
            else:
                await client.disconnect()
            async with asyncio.timeout(15):
                await rec.ended.wait()
            own_id = doc_state(await client.snapshot(), "doc")["clientID"]
            assert driver.uncaught_errors() == []

    entries = [e for e in rec.awareness() if e[0] == own_id]
    assert entries and entries[0][2] == {"user": {"name": "Xena"}}
    removals = [e for e in entries if e[2] is None]
    if how == "kill":
        assert removals == [], "a killed client must not send its awareness removal"
        assert not rec.close_frame_received, "a killed client must not send a close frame"
    else:
        assert removals, "a disconnecting client sends its awareness removal"
        assert entries[-1][2] is None, "the removal is the last awareness entry it sends"
        assert rec.close_frame_received, "a disconnecting client closes with a close frame"
