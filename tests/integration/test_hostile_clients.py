"""No client can hurt another (issue 7, items 2-5 and 7): hand-made frames against a real server,
and the real npm y-websocket client as the victim of the awareness lock-out.

Nothing here is timed: what an attack costs the others in time is in benchmarks/stalls.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pycrdt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clients.sync_client import SyncClient
from protocol import hocuspocus, ywebsocket
from protocol.awareness import MAX_CLOCK, AwarenessEntry, encode_awareness_update
from protocol.hocuspocus import AuthToken
from protocol.lib0 import var_uint
from protocol.messages import AwarenessMessage, SyncStep1

from .hostile import Observer, awareness_frame, eventually_metric, metric, metrics, open_raw, poll
from .server_process import HOST, SamenServer
from .yjs_driver import YjsDriver, doc_text, text_insert

pytestmark = pytest.mark.integration

PROTOCOLS = ["y-websocket", "hocuspocus"]
MALLORY = '{"user":{"name":"Mallory"}}'


@pytest.fixture
async def driver() -> AsyncIterator[YjsDriver]:
    async with YjsDriver() as d:
        yield d
        assert d.uncaught_errors() == [], d.stderr_text()


def url_of(server: SamenServer, protocol: str) -> str:
    return server.ws_url if protocol == "y-websocket" else server.hocuspocus_url


def text_of(client: SyncClient) -> str:
    return str(client.doc.get("t", type=pycrdt.Text))


async def test_awareness_lock_out_fails_and_the_victim_keeps_editing(
    samen: SamenServer, driver: YjsDriver
) -> None:
    doc = "lockout"
    victim = await driver.connect("victim", "y-websocket", samen.ws_url, [doc], user="Victim")
    await victim.wait_synced()
    victim_id = victim.state["docs"][doc]["clientID"]
    async with Observer(samen.ws_url, doc) as observer:
        await observer.wait_synced()
        await observer.wait_for(lambda: observer.state_of(victim_id) is not None, 20)
        # The attack of the issue: the victim's id at clock 2^53 - 1 (y-protocols then sends
        # 2^53, which a server must decode), and every other way to overwrite or remove it.
        attacks = [
            (victim_id, MAX_CLOCK - 1, MALLORY),
            (victim_id, 1_000_000, MALLORY),
            (victim_id, MAX_CLOCK - 1, "null"),
            (victim_id, 1, "null"),
        ]
        for own_id, protocol in enumerate(PROTOCOLS, start=424242):
            async with await open_raw(samen, protocol, doc) as attacker:
                for attack in attacks:
                    await attacker.send(awareness_frame(protocol, attack, key=doc))
                # The attacker's own presence still works: its attacks are dropped, it is not
                # closed; and frames are handled in order, so the attacks were dealt with.
                await attacker.send(awareness_frame(protocol, (own_id, 1, '{"user":"attacker"}'), key=doc))
                await observer.wait_for(lambda own_id=own_id: observer.state_of(own_id) is not None, 20)  # type: ignore[misc]
        drops = metric(await metrics(samen), "samen_awareness_dropped_total", reason="not_owner")
        assert drops == len(PROTOCOLS) * len(attacks)

        for i in range(30):
            await victim.edit(doc, [text_insert(f"v{i};", index=len("".join(f"v{j};" for j in range(i))))])
            if i % 10 == 0:
                await victim.set_awareness(doc, {"user": {"name": "Victim", "edit": i}})
        expected = "".join(f"v{i};" for i in range(30))
        await observer.wait_for(lambda: text_of(observer) == expected, 20)
        await observer.wait_for(lambda: '"edit":20' in (observer.state_of(victim_id) or ""), 20)
        # Nobody else's state for the victim ever reached anyone.
        assert all("Mallory" not in state and state != "null" for state in observer.seen(victim_id))
        assert observer.state_of(victim_id) == json.dumps({"user": {"name": "Victim", "edit": 20}}).replace(
            " ", ""
        )

    snapshot = await victim.snapshot()
    assert snapshot["docs"][doc]["status"] == "connected" and snapshot["docs"][doc]["synced"]
    assert doc_text(snapshot, doc) == expected
    exposition = await metrics(samen)
    assert metric(exposition, "samen_bad_input_closes_total") == 0
    assert metric(exposition, "samen_slow_clients_closed_total") == 0
    assert "closing with" not in samen.log_text()  # no connection was closed for its input
    await victim.disconnect()

    await samen.restart()
    async with SyncClient(samen.ws_url, doc) as reader:
        await reader.wait_for(lambda: text_of(reader) == expected, 20)
    assert "Traceback" not in samen.log_text()


@pytest.mark.parametrize("attacker_protocol", PROTOCOLS)
async def test_presence_of_others_cannot_be_changed_or_removed(
    samen: SamenServer, attacker_protocol: str
) -> None:
    doc = "presence"
    async with (
        Observer(samen.ws_url, doc) as ann,
        Observer(samen.hocuspocus_url, doc, protocol="hocuspocus") as bob,
    ):
        await ann.wait_synced()
        await bob.wait_synced()
        ann.set_awareness({"user": "ann"})
        bob.set_awareness({"user": "bob"})
        await ann.wait_for(lambda: bob.client_id in ann.awareness.states)
        await bob.wait_for(lambda: ann.client_id in bob.awareness.states)
        async with await open_raw(samen, attacker_protocol, doc) as attacker:
            for victim in (ann.client_id, bob.client_id):
                for entry in ((victim, 2, '{"user":"evil"}'), (victim, 1, "null"), (victim, 99, "null")):
                    await attacker.send(awareness_frame(attacker_protocol, entry, key=doc))
            # Its own id at 2^53 - 1 and then 2^53 (what y-protocols sends next): accepted.
            for clock in (MAX_CLOCK - 1, MAX_CLOCK):
                await attacker.send(
                    awareness_frame(attacker_protocol, (777, clock, f'{{"c":{clock}}}'), key=doc)
                )
            await ann.wait_for(lambda: ann.state_of(777) == f'{{"c":{MAX_CLOCK}}}')
            await eventually_metric(samen, "samen_awareness_dropped_total", 6, reason="not_owner")
        for late_protocol in PROTOCOLS:
            async with Observer(url_of(samen, late_protocol), doc, protocol=late_protocol) as late:  # type: ignore[arg-type]
                await late.wait_synced()
                await late.wait_for(lambda: ann.client_id in late.awareness.states)
                await late.wait_for(lambda: bob.client_id in late.awareness.states)
                assert late.state_of(ann.client_id) == '{"user":"ann"}'
                assert late.state_of(bob.client_id) == '{"user":"bob"}'
        for watcher in (ann, bob):
            for victim in (ann.client_id, bob.client_id):
                assert all(state in ('{"user":"ann"}', '{"user":"bob"}') for state in watcher.seen(victim))
        assert not ann.closed.is_set() and not bob.closed.is_set()


async def test_awareness_bomb_is_dropped_before_it_is_decoded(samen: SamenServer) -> None:
    doc = "bomb"
    async with (
        Observer(samen.ws_url, doc) as bystander,
        await open_raw(samen, "y-websocket", doc) as attacker,
    ):
        await bystander.wait_synced()
        # The bomb of the issue: a million real entries (client id, clock 1, "{}"), 6.7 MiB.
        real = var_uint(1_000_000) + b"".join(var_uint(c) + b"\x01\x02{}" for c in range(1, 1_000_001))
        assert len(real) > 6_000_000
        await attacker.send(ywebsocket.encode(AwarenessMessage(real)))
        # The same claim in front of bytes that are no entries at all: had the server decoded
        # a single entry it would close the attacker with 1007; it drops it on the count alone.
        fake = var_uint(1_000_000) + b"\xff" * 3_000_000
        await attacker.send(ywebsocket.encode(AwarenessMessage(fake)))
        # Handled in order, so once this arrives the two bombs were dealt with; nobody was closed.
        await attacker.send(awareness_frame("y-websocket", (31337, 1, '{"after":"bombs"}')))
        await bystander.wait_for(lambda: bystander.state_of(31337) is not None, 30)
        assert metric(await metrics(samen), "samen_awareness_dropped_total", reason="too_many_entries") == 2
        async with Observer(samen.ws_url, doc) as joiner:
            await joiner.wait_synced()
            await joiner.wait_for(lambda: 31337 in joiner.awareness.states)
            assert len(joiner.entries) == 1  # the greeting held the one real state, not a million
        assert len(bystander.entries) == 1
        assert not bystander.closed.is_set()


@pytest.mark.parametrize("protocol", ["y-websocket", "hocuspocus"])
async def test_state_vector_bomb_is_refused_on_its_count(samen: SamenServer, protocol: str) -> None:
    """Point 5: a SyncStep1 whose state vector claims 2^29 entries in 8 bytes is bad input
    (1007) for its sender, decided on the count against the bytes left, and nobody else
    notices: a bystander's edit in another room still arrives, and its own socket stays."""
    async with Observer(samen.ws_url, "sv-bystander") as bystander, Observer(
        samen.ws_url, "sv-bystander"
    ) as other:  # fmt: skip
        await bystander.wait_synced()
        await other.wait_synced()
        attacker = await open_raw(samen, protocol, "sv-bomb")
        bomb = var_uint(2**29) + b"\x01" * (8 - len(var_uint(2**29)))
        frame = ywebsocket.encode(SyncStep1(bomb))
        if protocol == "hocuspocus":
            frame = hocuspocus.encode_frame("sv-bomb", SyncStep1(bomb))
        for _ in range(20):  # "repeatable at will": each is refused the same way
            await attacker.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(30):
                while True:
                    await attacker.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
        bystander.doc.get("t", type=pycrdt.Text).insert(0, "still here")
        await other.wait_for(lambda: text_of(other) == "still here", 30)
        assert not bystander.closed.is_set() and not other.closed.is_set()
    assert "state vector" in samen.log_text()


# -- memory: the send budget, checked through the server's own accounting ------------------


def _masked_frame(payload: bytes) -> bytes:
    """A client → server binary frame (RFC 6455 requires clients to mask)."""
    mask = os.urandom(4)
    length = len(payload)
    header = bytes([0x82]) + (
        bytes([0x80 | length])
        if length < 126
        else bytes([0x80 | 126]) + length.to_bytes(2, "big")
        if length < 65536
        else bytes([0x80 | 127]) + length.to_bytes(8, "big")
    )
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _non_reading_socket(server: SamenServer, path: str, frames: list[bytes]) -> socket.socket:
    """A WebSocket that upgrades, sends `frames`, and then reads nothing more, with a receive
    buffer as small as the kernel allows, so whatever the server sends piles up on its side."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (HOST, server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    response = b""
    async with asyncio.timeout(10):
        while b"\r\n\r\n" not in response:  # frames sent before the 101 would be lost
            response += await loop.sock_recv(sock, 1)
    assert response.startswith(b"HTTP/1.1 101"), response
    await loop.sock_sendall(sock, b"".join(_masked_frame(frame) for frame in frames))
    return sock


async def test_a_client_that_never_reads_is_closed_within_its_budget(tmp_path: Path) -> None:
    budget = 1024 * 1024
    async with SamenServer(tmp_path / "data", env={"SAMEN_SEND_BUDGET": str(budget)}) as server:
        # The writer uses Hocuspocus for its acknowledgements and waits for them every 20
        # edits: the server echoes every update to its sender too, and a writer that sent
        # 9 MiB at once would be over its own 1 MiB budget whenever it read a little late.
        # The reader below joins once the server holds everything.
        async with SyncClient(server.hocuspocus_url, "busy", protocol="hocuspocus") as writer:
            await writer.wait_synced()
            hostile = await _non_reading_socket(server, "/ws/busy", [ywebsocket.encode(SyncStep1(b"\x00"))])
            try:
                text = writer.doc.get("t", type=pycrdt.Text)
                # 9 MiB through a room whose one peer reads nothing (twice what the kernel
                # buffers on loopback), in updates small enough that even merged (32 to a frame)
                # no frame is larger than the budget by itself. Each big insert is deleted
                # again, so the document stays small and the test quick.
                for _batch in range(30):
                    for _ in range(20):
                        text.insert(0, "x" * (16 * 1024))
                        text.insert(0, "y")
                        del text[1 : 1 + 16 * 1024]
                    await writer.wait_acknowledged(timeout=60)
                await eventually_metric(server, "samen_slow_clients_closed_total", 1, timeout=60)
                exposition = await metrics(server)
                assert 0 < metric(exposition, "samen_send_queue_peak_bytes") <= budget
                assert metric(exposition, "samen_send_budget_bytes") == budget
                # The room and its other clients are unaffected.
                async with SyncClient(server.ws_url, "busy") as reader:
                    await reader.wait_for(lambda: text_of(reader) == "y" * 600, 60)
            finally:
                hostile.close()
            assert not writer.closed.is_set()
        assert "client too slow" in server.log_text()


async def test_sync_step1_spam_on_a_big_document_stays_within_the_budget(samen: SamenServer) -> None:
    budget = 4 * 1024 * 1024  # the default
    async with SyncClient(samen.ws_url, "big") as writer, Observer(samen.ws_url, "big") as observer:
        await writer.wait_synced()
        await observer.wait_synced()
        text = writer.doc.get("t", type=pycrdt.Text)
        for _ in range(8):
            text.insert(len(text), "y" * (128 * 1024))  # a 1 MiB document
        await observer.wait_for(lambda: len(text_of(observer)) == 1024 * 1024, 30)
        spam = [ywebsocket.encode(SyncStep1(b"\x00"))] * 60  # 60 x "send me everything"
        marker = ywebsocket.encode(AwarenessMessage(encode_awareness_update([AwarenessEntry(5150, 1, "{}")])))
        hostile = await _non_reading_socket(samen, "/ws/big", [*spam, marker])
        try:
            # Either the server closed it for going over its budget, or (coalescing the
            # answers) it handled all 60 and then the marker: both end here.
            async def settled() -> bool:
                closed = metric(await metrics(samen), "samen_slow_clients_closed_total") >= 1
                return closed or observer.state_of(5150) is not None

            await poll(settled, 60, "the spam to be answered or its sender closed")
            assert metric(await metrics(samen), "samen_send_queue_peak_bytes") <= budget
        finally:
            hostile.close()
        assert not writer.closed.is_set() and not observer.closed.is_set()


# -- names -----------------------------------------------------------------------------------


async def test_one_name_is_one_document_over_both_protocols(samen: SamenServer) -> None:
    for name in ("a b", "café/été", "日本語 page"):
        async with SyncClient(samen.ws_url, quote(name)) as ws_client:
            await ws_client.wait_synced()
            ws_client.doc.get("t", type=pycrdt.Text).insert(0, f"hello {name}")
            async with SyncClient(samen.hocuspocus_url, name, protocol="hocuspocus") as hp_client:
                await hp_client.wait_for(lambda name=name: text_of(hp_client) == f"hello {name}")  # type: ignore[misc]


@pytest.mark.parametrize(
    "key",
    [
        "del\x7fname",
        "c1\x85name",
        "bidi\u202ename",
        "ctl\x01name",
        "doc\0" + "s" * (1024 * 1024),
        "doc\0a\u2066b",
    ],
)
async def test_bad_hocuspocus_keys_are_refused(samen: SamenServer, key: str) -> None:
    async with connect(samen.hocuspocus_url, max_size=None) as ws:
        await ws.send(hocuspocus.encode_frame(key, AuthToken("token")))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    assert metric(await metrics(samen), "samen_rooms_open") == 0
