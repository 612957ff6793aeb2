"""The thread routes in process (SQLite and PostgreSQL for the tables, rooms over a memory
store): start, list, read and post; a REST post reaches a live session of the thread; who may
do what (viewers read, editors post); bad input answered with a 4xx JSON error that changes
nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from crdt.thread_doc import read_messages
from server.api.app import create_api
from server.api.context import ApiContext
from server.auth.ports import Grant, Principal
from server.backplane.memory import MemoryHub
from server.db import Database
from server.domain.space_service import OPERATOR
from server.domain.spaces import JoinPolicy, SpaceRole, Visibility
from server.domain.threads import ThreadService
from server.session import ClientSession
from server.store.memory import MemoryStore

from ..nodes import Node, RecordingChannel, running_node
from .conftest import Api, make_api
from .test_space_api import error_code


@dataclass
class Site:
    api: Api
    node: Node
    threads: ThreadService

    def as_(self, name: str, token: str) -> httpx.AsyncClient:
        return self.api.bearer(token)


@pytest.fixture
async def site(database: Database) -> AsyncIterator[tuple[Site, dict[str, httpx.AsyncClient]]]:
    api = make_api(database)
    accounts = api.auth.accounts
    await accounts.add_person("root", actor="cli", site_role="admin")
    for name in ("ann", "bob", "vic", "out"):
        await accounts.add_person(name, actor="cli")
    store = MemoryStore()
    await store.open()
    async with running_node(store, MemoryHub().backplane("n1")) as node:
        ctx = ApiContext(api.auth)
        threads = ThreadService(api.auth.db, ctx.spaces, node.rooms)
        ctx.threads = threads
        app = Starlette(routes=[Mount("/api/v1", app=create_api(ctx))])
        transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 4711))
        spaces = ctx.spaces
        await spaces.create(OPERATOR, "eng", "Engineering")
        await spaces.create(OPERATOR, "hr", "HR", join_policy=JoinPolicy.INVITE, visibility=Visibility.SECRET)
        await spaces.add_member(OPERATOR, "eng", "ann", SpaceRole.EDITOR)
        await spaces.add_member(OPERATOR, "eng", "bob", SpaceRole.EDITOR)
        await spaces.add_member(OPERATOR, "eng", "vic", SpaceRole.VIEWER)
        await spaces.add_member(OPERATOR, "hr", "ann", SpaceRole.EDITOR)
        clients = {}
        for name in ("root", "ann", "bob", "vic", "out"):
            _info, token = await accounts.create_token(name, actor="cli")
            clients[name] = httpx.AsyncClient(
                transport=transport, base_url="http://wiki.test", headers={"Authorization": f"Bearer {token}"}
            )
        clients["stranger"] = httpx.AsyncClient(transport=transport, base_url="http://wiki.test")
        try:
            yield Site(api, node, threads), clients
        finally:
            for client in clients.values():
                await client.aclose()


async def test_a_thread_over_rest_reaches_a_live_client(
    site: tuple[Site, dict[str, httpx.AsyncClient]],
) -> None:
    s, c = site
    created = await c["ann"].post("/api/v1/spaces/eng/threads", json={"title": "Lunch?"})
    assert created.status_code == 201, created.text
    thread = created.json()
    assert thread["document"] == f"eng/thread/{thread['id']}" and thread["created_by"] == "ann@local"
    page = await c["bob"].post("/api/v1/spaces/eng/threads", json={"page": "p1"})
    assert page.status_code == 201 and page.json()["page"] == "p1" and page.json()["title"] == ""
    listed = (await c["vic"].get("/api/v1/spaces/eng/threads")).json()["threads"]
    assert {t["id"] for t in listed} == {thread["id"], page.json()["id"]}

    # A live client of the thread (a session on the node) sees a REST post at once.
    channel = RecordingChannel()
    session = ClientSession(thread["document"], Principal("bob@local"), Grant.WRITE, channel, s.node.counters)
    session.start(await s.node.rooms.join(thread["document"], session), lambda _room: None)
    posted = await c["ann"].post(f"/api/v1/threads/{thread['id']}/messages", json={"body": "noon?"})
    assert posted.status_code == 201, posted.text
    first = posted.json()
    assert first["author"] == "ann@local" and first["body"] == "noon?" and first["parent"] is None
    await channel.wait_for(lambda: channel.updates_delivered())
    assert [m["body"] for m in read_messages(session.room.document.ydoc)] == ["noon?"]

    reply = await c["bob"].post(
        f"/api/v1/threads/{thread['id']}/messages", json={"body": "1pm", "parent": first["id"]}
    )
    assert reply.status_code == 201, reply.text
    got = (await c["vic"].get(f"/api/v1/threads/{thread['id']}")).json()
    assert [(m["author"], m["body"], m["parent"]) for m in got["messages"]] == [
        ("ann@local", "noon?", None), ("bob@local", "1pm", first["id"]),
    ]  # fmt: skip
    message = got["messages"][0]
    assert message["deleted"] is False and message["reactions"] == {} and message["hidden"] is False
    assert abs(message["created"] - first["created"]) < 1 and message["edited"] is None


async def test_who_may_do_what_and_bad_input(site: tuple[Site, dict[str, httpx.AsyncClient]]) -> None:
    s, c = site
    thread = (await c["ann"].post("/api/v1/spaces/eng/threads", json={"title": "T"})).json()
    secret = (await c["ann"].post("/api/v1/spaces/hr/threads", json={"title": "S"})).json()
    url = f"/api/v1/threads/{thread['id']}"
    before = await s.api.auth.db.fetch("SELECT * FROM threads ORDER BY id")

    async def refused(
        client: httpx.AsyncClient, method: str, path: str, status: int, code: str, **kw: Any
    ) -> None:
        response = await client.request(method, path, **kw)
        assert (response.status_code, error_code(response)) == (status, code), response.text

    # Without credentials every route is 401, before anything about the thread is told.
    for method, path, body in [
        ("POST", "/api/v1/spaces/eng/threads", {"title": "x"}),
        ("GET", "/api/v1/spaces/eng/threads", None),
        ("GET", url, None),
        ("POST", f"{url}/messages", {"body": "x"}),
        ("GET", "/api/v1/threads/ffffffffffffffff", None),
    ]:
        await refused(c["stranger"], method, path, 401, "unauthenticated", json=body)
    await refused(c["vic"], "POST", "/api/v1/spaces/eng/threads", 403, "forbidden", json={"title": "x"})
    await refused(c["vic"], "POST", f"{url}/messages", 403, "forbidden", json={"body": "x"})
    await refused(c["out"], "GET", "/api/v1/spaces/hr/threads", 404, "space_not_found")
    await refused(c["out"], "GET", f"/api/v1/threads/{secret['id']}", 404, "thread_not_found")
    await refused(c["bob"], "GET", "/api/v1/threads/ffffffffffffffff", 404, "thread_not_found")
    await refused(c["bob"], "GET", "/api/v1/threads/%00-x", 404, "thread_not_found")
    await refused(c["ann"], "POST", "/api/v1/spaces/eng/threads", 422, "invalid_title", json={})
    await refused(
        c["ann"], "POST", "/api/v1/spaces/eng/threads", 422, "invalid_request", json={"title": "x" * 201}
    )
    await refused(c["ann"], "POST", "/api/v1/spaces/eng/threads", 422, "invalid_page", json={"page": "a/b"})
    await refused(
        c["ann"], "POST", "/api/v1/spaces/nosuch/threads", 404, "space_not_found", json={"title": "x"}
    )
    await refused(c["ann"], "POST", f"{url}/messages", 422, "invalid_request", json={"body": ""})
    await refused(c["ann"], "POST", f"{url}/messages", 422, "invalid_body", json={"body": "   "})
    await refused(
        c["ann"], "POST", f"{url}/messages", 422, "invalid_request", json={"body": "x", "author": "bob"}
    )
    await refused(
        c["ann"], "POST", f"{url}/messages", 404, "message_not_found", json={"body": "x", "parent": "no"}
    )
    await refused(
        c["ann"],
        "POST",
        f"{url}/messages",
        400,
        "invalid_json",
        content=b"{",
        headers={"content-type": "application/json"},
    )
    assert await s.api.auth.db.fetch("SELECT * FROM threads ORDER BY id") == before
    assert (await c["vic"].get(url)).json()["messages"] == []

    await s.threads._spaces.set_archived(OPERATOR, "eng", True)
    await refused(c["ann"], "POST", f"{url}/messages", 409, "space_archived", json={"body": "x"})
    assert (await c["ann"].get(url)).status_code == 200
