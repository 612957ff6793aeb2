"""Authentication on a real Samen process (SAMEN_AUTH=required) with the real npm providers:
a token signs in over y-websocket (`params: {token}`) and Hocuspocus (`token`), no token is
4401 / PermissionDenied, a token revoked by the CLI (acting on the store directly) or a
person suspended over REST loses their live sessions at once; a cookie from a foreign
origin is refused; the 11th failed sign-in in a minute is 429; the tables hold argon2id
hashes and token/session hashes only."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.domain.space_service import OPERATOR
from server.domain.spaces import SpaceRole

from .intranet import intranet
from .server_process import REPO_ROOT, SamenServer
from .yjs_driver import Client, ClientKind, YjsDriver, doc_state, doc_text, text_insert, wait_converged

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
# Revocation reaches live sessions within a second (the feed polls every 0.25 s); the waits
# allow more, for a loaded machine, and the tests print what they measured.
REVOKED_WITHIN = 3.0


async def samen(data_dir: Path, *args: str, stdin: str = "") -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", *args, "--data-dir", str(data_dir),
        cwd=REPO_ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode == 0, f"samen {' '.join(args)}: {err.decode()}"
    return out.decode().strip()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SamenServer]:
    data = tmp_path / "data"
    await samen(
        data, "user", "add", "root", "--site-role", "admin", "--password-stdin", stdin=PASSWORD + "\n"
    )
    await samen(data, "user", "add", "ann", "--password-stdin", stdin=PASSWORD + "\n")
    await samen(data, "user", "add", "bob")
    async with intranet(data) as net:  # the documents below are in space `eng`, ann and bob edit it
        await net.spaces.create(OPERATOR, "eng", "Engineering")
        for name in ("ann", "bob"):
            await net.spaces.add_member(OPERATOR, "eng", name, SpaceRole.EDITOR)
    async with SamenServer(data, env={"SAMEN_AUTH": "required"}) as running:
        yield running


@pytest.fixture
async def driver() -> AsyncIterator[YjsDriver]:
    async with YjsDriver() as d:
        yield d
        assert d.uncaught_errors() == [], d.stderr_text()


async def token_of(server: SamenServer, name: str, *extra: str) -> str:
    return await samen(server.data_dir, "token", "create", name, *extra)


async def connect_with(
    driver: YjsDriver, server: SamenServer, cid: str, kind: ClientKind, doc: str, token: str | None
) -> Client:
    if kind == "y-websocket":
        params = {"token": token} if token is not None else None
        return await driver.connect(cid, kind, server.ws_url, [doc], user=cid, params=params)
    return await driver.connect(cid, kind, server.hocuspocus_url, [doc], token=token or "", user=cid)


@pytest.mark.parametrize("kind", ["y-websocket", "hocuspocus-v2", "hocuspocus-v3", "hocuspocus-v4"])
async def test_a_token_signs_in_and_none_is_refused(
    server: SamenServer, driver: YjsDriver, kind: ClientKind
) -> None:
    doc = "eng/roadmap"
    writer = await connect_with(driver, server, "ann", kind, doc, await token_of(server, "ann"))
    await writer.wait_synced()
    reader = await connect_with(
        driver, server, "bob", kind, doc, await token_of(server, "bob", "--scope", "read")
    )
    await reader.wait_synced()
    await writer.edit(doc, [text_insert("signed in")])
    await wait_converged([writer, reader], doc)
    if kind != "y-websocket":
        assert doc_state(writer.state, doc)["scope"] == "read-write"
        assert doc_state(reader.state, doc)["scope"] == "readonly"  # a read-scope token reads only

    anonymous = await connect_with(driver, server, "anon", kind, doc, None)
    forged = await connect_with(driver, server, "forged", kind, doc, "samen_000000000000_" + "A" * 43)
    for client in (anonymous, forged):
        if kind == "y-websocket":
            await client.wait_for(lambda s: doc_state(s, doc)["closeCode"] == 4401, what="closed 4401")
            assert doc_state(client.state, doc)["status"] == "disconnected"  # and it stops retrying
        else:
            await client.wait_for(
                lambda s: doc_state(s, doc)["authFailed"] is not None, what="permission denied"
            )
        assert doc_text(client.state, doc) == ""  # not one byte of the document


async def test_a_revoked_token_closes_its_sessions_at_once(server: SamenServer, driver: YjsDriver) -> None:
    doc = "eng/plans"
    token = await token_of(server, "ann")
    token_id = token.split("_")[1]
    ws = await connect_with(driver, server, "ws", "y-websocket", doc, token)
    hp = await connect_with(driver, server, "hp", "hocuspocus-v4", doc, token)
    watcher = await connect_with(driver, server, "watcher", "y-websocket", doc, await token_of(server, "bob"))
    for client in (ws, hp, watcher):
        await client.wait_synced()
    await ws.edit(doc, [text_insert("before ")])
    await wait_converged([ws, hp, watcher], doc)

    called_at = time.monotonic()
    await samen(server.data_dir, "token", "revoke", token_id)  # the CLI writes to the store only
    revoked_at = time.monotonic()
    await ws.wait_for(
        lambda s: doc_state(s, doc)["closeCode"] == 4403, what="ws closed", timeout=REVOKED_WITHIN
    )
    await hp.wait_for(
        lambda s: doc_state(s, doc)["authFailed"] is not None, what="hp denied", timeout=REVOKED_WITHIN
    )
    closed_at = time.monotonic()
    print(
        f"revoked token: the CLI ran {revoked_at - called_at:.2f} s; sessions closed "
        f"{closed_at - revoked_at:.2f} s after it returned"
    )

    await hp.edit(doc, [text_insert("after ")])  # tried after the revocation: never applied
    late = await connect_with(driver, server, "late", "hocuspocus-v4", doc, await token_of(server, "bob"))
    await late.wait_synced()
    assert doc_text(late.state, doc) == "before " and doc_text(watcher.state, doc) == "before "


async def test_suspending_a_person_over_rest_closes_their_sessions(
    server: SamenServer, driver: YjsDriver
) -> None:
    doc = "eng/suspended"
    ws = await connect_with(driver, server, "ws", "y-websocket", doc, await token_of(server, "ann"))
    hp = await connect_with(driver, server, "hp", "hocuspocus-v3", doc, await token_of(server, "ann"))
    for client in (ws, hp):
        await client.wait_synced()
    root = await token_of(server, "root")
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=10) as http:
        headers = {"Authorization": f"Bearer {root}"}
        response = await http.patch("/api/v1/people/ann", json={"suspended": True}, headers=headers)
        assert response.status_code == 200, response.text
    suspended_at = time.monotonic()
    await ws.wait_for(
        lambda s: doc_state(s, doc)["closeCode"] == 4403, what="ws closed", timeout=REVOKED_WITHIN
    )
    await hp.wait_for(
        lambda s: doc_state(s, doc)["authFailed"] is not None, what="hp denied", timeout=REVOKED_WITHIN
    )
    print(f"suspension: sessions closed {time.monotonic() - suspended_at:.2f} s after the REST call")


async def test_a_cookie_from_a_foreign_origin_is_refused(server: SamenServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=10) as http:
        response = await http.post("/api/v1/session", json={"name": "ann", "password": PASSWORD})
        assert response.status_code == 200, response.text
        cookie = response.cookies["samen_session"]
    url = f"{server.ws_url}/eng/cookie"
    headers = {"Cookie": f"samen_session={cookie}"}
    async with connect(url, additional_headers=headers, origin=server.http_url) as own:  # type: ignore[arg-type]
        assert isinstance(await asyncio.wait_for(own.recv(), 10), bytes)  # SyncStep1: accepted
    async with connect(url, additional_headers=headers, origin="http://evil.example") as foreign:  # type: ignore[arg-type]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(foreign.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_eleventh_failed_sign_in_is_429_and_the_tables_hold_hashes(server: SamenServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=30) as http:
        for attempt in range(1, 12):
            response = await http.post(
                "/api/v1/session", json={"name": "ann", "password": f"guess {attempt}"}
            )
            assert response.status_code == (429 if attempt == 11 else 401), (attempt, response.text)
        assert response.json()["error"]["code"] == "rate_limited"
        right = await http.post("/api/v1/session", json={"name": "ann", "password": PASSWORD})
        assert right.status_code == 429  # the account stays locked for the rest of the window
    token = await token_of(server, "ann")
    with sqlite3.connect(server.data_dir / "samen.sqlite3") as db:
        hashes = [row[0] for row in db.execute("SELECT password_hash FROM people WHERE password_hash != ''")]
        assert len(hashes) == 2 and all(h.startswith("$argon2id$") for h in hashes)
        assert PASSWORD not in str(db.execute("SELECT * FROM people").fetchall())
        tokens = db.execute("SELECT * FROM api_tokens").fetchall()
        assert tokens and token.split("_", 2)[2] not in str(tokens)
        assert all(len(row[0]) == 64 for row in db.execute("SELECT secret_hash FROM web_sessions"))
