"""Bad input gets a clean close with the right code; the room, its other clients and the
document are unaffected (real server process, raw WebSocket clients)."""

from __future__ import annotations

import asyncio
import random

import pycrdt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clients.sync_client import SyncClient
from crdt.updates import decode_state_vector

from .server_process import SamenServer

pytestmark = pytest.mark.integration

HOCUSPOCUS_DOC = bytes.fromhex("04 64 6f 63 31")  # varString "doc1"
TWO_POW_53 = bytes.fromhex("80 80 80 80 80 80 80 10")

RANDOM = random.Random(20261130)

# (what, y-websocket frame, hocuspocus frame, expected close codes)
CASES = [
    *[("random bytes", RANDOM.randbytes(n), RANDOM.randbytes(n), {1002, 1007}) for n in (1, 7, 64, 4096)],
    ("truncated varint", bytes.fromhex("00 02 80"), HOCUSPOCUS_DOC + bytes.fromhex("00 02 ff"), {1007}),
    (
        "length past the end",
        bytes.fromhex("00 02 0c 01 01"),
        HOCUSPOCUS_DOC + bytes.fromhex("00 02 0c 01"),
        {1007},
    ),
    (
        "2^53 length",
        bytes.fromhex("00 02") + TWO_POW_53,
        HOCUSPOCUS_DOC + bytes.fromhex("00 02") + TWO_POW_53,
        {1007},
    ),
    ("unknown message type", bytes.fromhex("07"), HOCUSPOCUS_DOC + bytes.fromhex("0b"), {1002}),
    (
        "update that is not a Yjs update",
        bytes.fromhex("00 02 03 05 ff ff"),
        HOCUSPOCUS_DOC + bytes.fromhex("00 02 03 05 ff ff"),
        {1007},
    ),
    (
        "bad awareness JSON",
        bytes.fromhex("01 06 01 01 01 02 7b 78"),
        HOCUSPOCUS_DOC + bytes.fromhex("01 06 01 01 01 02 7b 78"),
        {1007},
    ),
]


def text_of(client: SyncClient) -> str:
    return str(client.doc.get("t", type=pycrdt.Text))


async def expect_close(url: str, frame: bytes | str | None, codes: set[int], greeting: bool) -> str:
    async with connect(url, max_size=None) as ws:
        if greeting:
            await ws.recv()  # y-websocket: the server's SyncStep1 comes first
        if frame is not None:
            await ws.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):  # a server that ignores the frame fails here
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None, "the server must close with a code, not drop the socket"
        assert closed.value.rcvd.code in codes, (
            frame if isinstance(frame, str) else (frame or b"")[:16],
            closed.value.rcvd,
        )
        return closed.value.rcvd.reason


@pytest.mark.parametrize("protocol", ["y-websocket", "hocuspocus"])
async def test_bad_frames_close_only_the_sender(samen: SamenServer, protocol: str) -> None:
    url = samen.ws_url if protocol == "y-websocket" else samen.hocuspocus_url
    async with SyncClient(url, "doc1", protocol=protocol) as bystander:  # type: ignore[arg-type]
        await bystander.wait_synced()
        bystander.doc.get("t", type=pycrdt.Text).insert(0, "before")
        bystander.set_awareness({"user": "bystander"})
        async with SyncClient(url, "doc1", protocol=protocol) as probe:  # type: ignore[arg-type]
            await probe.wait_for(lambda: text_of(probe) == "before")
        state_before = bystander.doc.get_state()

        attack_url = f"{samen.ws_url}/doc1" if protocol == "y-websocket" else samen.hocuspocus_url
        greeting = protocol == "y-websocket"
        for what, ws_frame, hp_frame, codes in CASES:
            frame = ws_frame if protocol == "y-websocket" else hp_frame
            reason = await expect_close(attack_url, frame, codes, greeting)
            assert reason, f"{what}: a close reason is expected"
        await expect_close(attack_url, "text frame", {1003}, greeting)
        await expect_close(attack_url, b"\x00" * (16 * 1024 * 1024 + 1), {1009}, greeting)

        # The bystander was never disconnected and the room still works.
        assert not bystander.closed.is_set()
        bystander.doc.get("t", type=pycrdt.Text).insert(6, " after")
        async with SyncClient(url, "doc1", protocol=protocol) as late:  # type: ignore[arg-type]
            await late.wait_for(lambda: text_of(late) == "before after")
            await late.wait_for(lambda: bystander.client_id in late.awareness.states)
            # Nothing from the attacks reached the document: only the bystander ever wrote.
            assert set(decode_state_vector(late.doc.get_state())) == {bystander.client_id}
        assert decode_state_vector(state_before)[bystander.client_id] == len("before")
    assert "Traceback" not in samen.log_text()


async def test_bad_document_names_are_refused(samen: SamenServer) -> None:
    reason = await expect_close(f"{samen.ws_url}/", None, {4400}, greeting=False)
    assert "document name" in reason
    reason = await expect_close(f"{samen.ws_url}/{'x' * 2000}", None, {4400}, greeting=False)
    assert "longer than" in reason
