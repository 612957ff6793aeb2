"""Acceptance 2, the site part: live revocation on a site of three real nodes (PostgreSQL,
Redis). Members typing over y-websocket on node 1 and over Hocuspocus on node 2 are
removed from the space (REST on node 3: the backplane path) or lowered to viewer (the CLI,
another process: the revocation feed path); a token is revoked and a person suspended (REST
on node 3). Within a second (the close, or the downgrade,
arrives before a deadline the test waits on) they are closed or read-only, and nothing they
try afterwards is in the document on any node, nor in the store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pycrdt
import pytest

from server.domain.space_service import OPERATOR
from server.domain.spaces import JoinPolicy, SpaceRole
from server.store.postgres import PostgresStore

from ..redis_server import RedisServer
from .intranet import intranet
from .server_process import REPO_ROOT
from .site import SamenSite, eventually
from .yjs_driver import Client, YjsDriver, awareness_notes, doc_state, doc_text, text_insert

pytestmark = pytest.mark.integration

DOC = "eng/roadmap"
WITHIN = 1.0  # seconds: the bound for a revocation to take effect on every node
MEMBERS = ("ann", "bob", "w1", "w2", "w3")  # ann, bob: revoked; w1-w3: watchers on nodes 1-3


@pytest.fixture
async def site(tmp_path: Path, pg_dsn: str) -> AsyncIterator[tuple[SamenSite, dict[str, str]]]:
    async with intranet(pg_dsn) as net:
        await net.add_people({"admin": "admin", **{name: "member" for name in MEMBERS}})
        await net.spaces.create(OPERATOR, "eng", "Engineering", join_policy=JoinPolicy.INVITE)
        for name in MEMBERS:
            await net.spaces.add_member(OPERATOR, "eng", name, SpaceRole.EDITOR)
        tokens = dict(net.tokens)
    async with RedisServer(tmp_path / "redis") as redis, SamenSite(
        tmp_path, nodes=3, database_url=pg_dsn, redis_url=redis.url, extra_env={"SAMEN_AUTH": "required"}
    ) as samen:  # fmt: skip
        yield samen, tokens


@pytest.fixture
async def driver() -> AsyncIterator[YjsDriver]:
    async with YjsDriver() as d:
        yield d


async def start_typing(
    site: SamenSite, driver: YjsDriver, tokens: dict[str, str]
) -> tuple[Client, Client, list[Client]]:
    """ann on node 1 (y-websocket), bob on node 2 (Hocuspocus), a watcher on every node;
    returns once everyone's first edit reached every watcher."""
    n1, n2, n3 = site.nodes
    ann = await driver.connect("ann", "y-websocket", n1.ws_url, [DOC], params={"token": tokens["ann"]})
    bob = await driver.connect("bob", "hocuspocus-v4", n2.hocuspocus_url, [DOC], token=tokens["bob"])
    watchers = [
        await driver.connect("w1", "y-websocket", n1.ws_url, [DOC], params={"token": tokens["w1"]}),
        await driver.connect("w2", "hocuspocus-v4", n2.hocuspocus_url, [DOC], token=tokens["w2"]),
        await driver.connect("w3", "y-websocket", n3.ws_url, [DOC], params={"token": tokens["w3"]}),
    ]
    for client in (ann, bob, *watchers):
        await client.wait_synced()
    await ann.edit(DOC, [text_insert("<ann-before>")])
    await bob.edit(DOC, [text_insert("<bob-before>")])
    for watcher in watchers:
        await watcher.wait_for(
            lambda s: "<ann-before>" in doc_text(s, DOC) and "<bob-before>" in doc_text(s, DOC),
            what="both typists' edits",
        )
    return ann, bob, watchers


async def nothing_afterwards_anywhere(site: SamenSite, pg_dsn: str, watchers: list[Client]) -> None:
    """Each watcher types once more and waits for the others' edits: by then anything the
    revoked pair sent before would have arrived too. It must be nowhere, and not stored."""
    for watcher in watchers:
        await watcher.edit(DOC, [text_insert(f"<{watcher.cid}-after>")])
    marks = [f"<{w.cid}-after>" for w in watchers]
    for watcher in watchers:
        await watcher.wait_for(
            lambda s: all(m in doc_text(s, DOC) for m in marks), what="every watcher's edit"
        )
        text = doc_text(watcher.state, DOC)
        assert "<ann-after>" not in text and "<bob-after>" not in text, (watcher.cid, text)
    await asyncio.gather(*(node.stop() for node in site.nodes))
    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        doc = pycrdt.Doc()
        for update in (await store.load(DOC)).all_updates():
            doc.apply_update(update)
    finally:
        await store.close()
    stored = str(doc.get("t", type=pycrdt.Text))
    assert all(m in stored for m in ["<ann-before>", "<bob-before>", *marks]), stored
    assert "<ann-after>" not in stored and "<bob-after>" not in stored, stored


async def test_removed_members_are_closed_on_every_node(
    site: tuple[SamenSite, dict[str, str]], driver: YjsDriver, pg_dsn: str
) -> None:
    samen, tokens = site
    ann, bob, watchers = await start_typing(samen, driver, tokens)
    async with httpx.AsyncClient(base_url=f"{samen.nodes[2].http_url}/api/v1", trust_env=False) as http:
        admin = {"authorization": f"Bearer {tokens['admin']}"}
        for name in ("ann", "bob"):
            response = await http.delete(f"/spaces/eng/members/{name}", headers=admin)
            assert response.status_code == 204, response.text
    # Within a second both are out: y-websocket closed with 4403, Hocuspocus denied.
    await ann.wait_for(lambda s: doc_state(s, DOC)["closeCode"] == 4403, timeout=WITHIN, what="4403")
    await bob.wait_for(
        lambda s: doc_state(s, DOC)["authFailed"] == "access to this document was revoked",
        timeout=WITHIN,
        what="PermissionDenied",
    )
    await ann.edit(DOC, [text_insert("<ann-after>")])
    await bob.edit(DOC, [text_insert("<bob-after>")])
    await nothing_afterwards_anywhere(samen, pg_dsn, watchers)


async def test_lowered_members_are_read_only_on_every_node(
    site: tuple[SamenSite, dict[str, str]], driver: YjsDriver, pg_dsn: str
) -> None:
    samen, tokens = site
    ann, bob, watchers = await start_typing(samen, driver, tokens)
    before = [await samen.metric(i, "samen_sessions_revoked_total") for i in (0, 1)]
    for name in ("ann", "bob"):
        # The CLI, another process, acting on the store: the nodes follow the revocation feed.
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "server", "space", "set-role", "eng", name, "viewer"],
            cwd=REPO_ROOT, env={"SAMEN_DATABASE_URL": pg_dsn, "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    async def downgraded() -> bool:
        counts = [await samen.metric(i, "samen_sessions_revoked_total") for i in (0, 1)]
        return all(count > start for count, start in zip(counts, before, strict=True))

    # Within a second the sessions of node 1 (ann) and node 2 (bob) were downgraded.
    await eventually(downgraded, WITHIN, "the sessions on nodes 1 and 2 downgraded")
    await ann.edit(DOC, [text_insert("<ann-after>")])
    await bob.edit(DOC, [text_insert("<bob-after>")])
    # Read-only, not closed: Hocuspocus answers SyncStatus false; y-websocket stays connected
    # and its presence still reaches the others (after its edit: frames are handled in order).
    await bob.wait_for(lambda s: doc_state(s, DOC)["syncRefused"] >= 1, what="SyncStatus false")
    await ann.set_awareness(DOC, {"note": "ann-after"})
    for watcher in watchers:
        await watcher.wait_for(lambda s: "ann-after" in awareness_notes(s, DOC), what="ann's presence")
    assert (
        doc_state(ann.state, DOC)["closeCode"] is None and doc_state(ann.state, DOC)["status"] == "connected"
    )
    await nothing_afterwards_anywhere(samen, pg_dsn, watchers)


async def test_a_suspended_person_and_a_revoked_token_are_closed_on_every_node(
    site: tuple[SamenSite, dict[str, str]], driver: YjsDriver, pg_dsn: str
) -> None:
    samen, tokens = site
    ann, bob, watchers = await start_typing(samen, driver, tokens)
    async with httpx.AsyncClient(base_url=f"{samen.nodes[2].http_url}/api/v1", trust_env=False) as http:
        admin = {"authorization": f"Bearer {tokens['admin']}"}
        # ann's token is revoked (she is still a member), bob is suspended: REST on node 3.
        response = await http.delete(f"/tokens/{tokens['ann'].split('_')[1]}", headers=admin)
        assert response.status_code in (200, 204), response.text
        response = await http.patch("/people/bob", json={"suspended": True}, headers=admin)
        assert response.status_code == 200, response.text
    await ann.wait_for(lambda s: doc_state(s, DOC)["closeCode"] == 4403, timeout=WITHIN, what="4403")
    await bob.wait_for(lambda s: doc_state(s, DOC)["authFailed"] is not None, timeout=WITHIN, what="denied")
    await ann.edit(DOC, [text_insert("<ann-after>")])
    await bob.edit(DOC, [text_insert("<bob-after>")])
    await nothing_afterwards_anywhere(samen, pg_dsn, watchers)
