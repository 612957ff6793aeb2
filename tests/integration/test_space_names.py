"""Acceptance 7 for document names in spaces (real server, authentication on, a site
admin's token): path tricks and names outside any space are refused with the documented
close code (y-websocket 4403, Hocuspocus PermissionDenied for that document while the
socket's other documents go on; control characters 4400), and nothing is stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from protocol import hocuspocus
from protocol.hocuspocus import AuthToken
from server.domain.space_service import OPERATOR
from server.domain.spaces import Visibility

from .intranet import intranet
from .server_process import SamenServer
from .yjs_driver import YjsDriver, doc_state, text_insert

pytestmark = pytest.mark.integration

# Each would be refused in any case; none may ever be read as a document of `eng` or `hush`.
TRICKS = [
    "eng",  # no space part
    "eng/",  # nothing after the space
    "eng/../hush/plans",
    "eng/./x",
    "eng//x",
    "eng%2Fx",
    "..%2Fhush/plans",
    "eng/a%2F..%2F..%2Fhush",
    "eng/a%00b",
    "eng/a\\b",
    "Eng/x",
    "-eng/x",
    "/eng/x",
    "nosuch/x",
    "e" * 65 + "/x",
]
BAD_IN_A_PATH = {"eng%2Fx", "..%2Fhush/plans", "eng/a%2F..%2F..%2Fhush", "eng/a%00b"}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[SamenServer, str]]:
    async with intranet(tmp_path / "data") as net:
        await net.add_people({"root": "admin"})
        await net.spaces.create(OPERATOR, "eng", "Engineering")
        await net.spaces.create(OPERATOR, "hush", "Hush", visibility=Visibility.SECRET)
        token = net.tokens["root"]
    async with SamenServer(tmp_path / "data", env={"SAMEN_AUTH": "required"}) as samen:
        yield samen, token


async def ywebsocket_answer(url: str) -> int | str:
    """ "open" if the server started syncing, else its close code."""
    async with connect(url, open_timeout=10) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code
        return "open"


async def test_tricky_names_over_ywebsocket(server: tuple[SamenServer, str]) -> None:
    samen, token = server
    assert await ywebsocket_answer(f"{samen.ws_url}/eng/ok?token={token}") == "open"
    for name in TRICKS:
        # In a URL path an escaped slash or an escaped control character is a bad name
        # (4400, before any authorization); every other trick is a name outside any space.
        expected = 4400 if name in BAD_IN_A_PATH else 4403
        assert await ywebsocket_answer(f"{samen.ws_url}/{name}?token={token}") == expected, name
    # Too long, or with a control character: a bad name (4400) before any authorization.
    assert await ywebsocket_answer(f"{samen.ws_url}/eng/{'x' * 2000}?token={token}") == 4400


async def test_tricky_names_over_hocuspocus(server: tuple[SamenServer, str]) -> None:
    samen, token = server
    async with YjsDriver() as driver:
        docs = ["eng/ok", *TRICKS]
        client = await driver.connect("h", "hocuspocus-v4", samen.hocuspocus_url, docs, token=token)

        def settled(state: dict[str, object]) -> bool:
            ok = doc_state(state, "eng/ok")
            refused = [doc_state(state, name)["authFailures"] for name in TRICKS]
            return bool(ok["synced"]) and all(refused)

        await client.wait_for(settled, what="eng/ok open, every trick refused")
        for name in TRICKS:
            assert doc_state(client.state, name)["authFailures"][0] == "no access to this document", name
        # The socket's good document goes on.
        await client.edit("eng/ok", [text_insert("still here")])
        await client.wait_for(lambda s: doc_state(s, "eng/ok")["unsynced"] == 0, what="edit acknowledged")
    # A control character in a name closes the Hocuspocus socket with 4400.
    async with connect(samen.hocuspocus_url) as ws:
        await ws.send(hocuspocus.encode_frame("eng/a\x01b", AuthToken(token)))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400

    await samen.stop()
    async with intranet(samen.data_dir) as net:
        stored = {row["doc"] for row in await net.db.fetch("SELECT DISTINCT doc FROM updates")}
        assert stored == {"eng/ok"}
        assert [row["slug"] for row in await net.rows("spaces")] == ["eng", "hush"]
