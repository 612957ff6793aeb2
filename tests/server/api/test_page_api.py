"""The page routes in-process (SQLite and PostgreSQL, real rooms on an in-process node): a
page's life over REST, content in and out, and bad input (acceptance 8: a move into its own
subtree, a page in an archived space, over-long titles, Markdown bombs, a 50 MiB body,
unknown ids) answered with a 4xx JSON error that changes nothing: not the tables, not the
page's document."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pycrdt
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from crdt.pages import read_page, to_markdown
from crdt.pages.tree import read_index
from server.api.app import create_api
from server.api.context import ApiContext
from server.auth.service import build_auth
from server.backplane.local import LocalBackplane
from server.db import Database
from server.domain.page_service import PageService
from server.domain.space_service import PeopleDirectory, SpaceService
from server.settings import Settings
from server.store.memory import MemoryStore

from ..nodes import Node, running_node
from .conftest import BASE, FAST, PASSWORD, Api
from .test_space_api import error_code

MiB = 1024 * 1024


@dataclass
class PageApi(Api):
    node: Node | None = None


@pytest.fixture
async def api(database: Database) -> AsyncIterator[PageApi]:
    store = MemoryStore()
    await store.open()
    try:
        async with running_node(store, LocalBackplane("node-a")) as node:
            auth = build_auth(Settings(), node="node-a", db=database, passwords=FAST)
            spaces = SpaceService(auth.db, PeopleDirectory(auth.people), auth.audit, auth.revocations)
            pages = PageService(spaces, node.rooms, auth.revocations)
            app = Starlette(routes=[Mount("/api/v1", app=create_api(ApiContext(auth, spaces, pages)))])
            transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 4711))

            def client(**kwargs: Any) -> httpx.AsyncClient:
                return httpx.AsyncClient(transport=transport, base_url=BASE, **kwargs)

            api = PageApi(auth, client, node=node)
            auth.revocations.on_record = api.revoked.append
            await auth.accounts.add_person("root", actor="cli", site_role="admin", password=PASSWORD)
            for name in ("ann", "bob", "cat"):
                await auth.accounts.add_person(name, actor="cli")
            yield api
    finally:
        await store.close()


@pytest.fixture
async def eng(api: PageApi) -> dict[str, httpx.AsyncClient]:
    """Space eng (on invitation): root its admin, ann an editor, bob a viewer, cat nothing."""
    clients = {n: api.bearer(await api.token(n)) for n in ("root", "ann", "bob", "cat")}
    root = clients["root"]
    assert (
        await root.post("/api/v1/spaces", json={"slug": "eng", "title": "Eng", "join_policy": "invite"})
    ).is_success
    for name, role in (("ann", "editor"), ("bob", "viewer")):
        assert (await root.post("/api/v1/spaces/eng/members", json={"person": name, "role": role})).is_success
    return clients


async def snapshot(api: PageApi, page_ids: list[str]) -> tuple[Any, ...]:
    """The pages table, and each page document and the index as state vector and content
    (the bytes of a state may be encoded in another order)."""
    assert api.node is not None
    rows = await api.auth.db.fetch("SELECT * FROM pages ORDER BY id")
    documents = []
    for name in [f"eng/page/{i}" for i in page_ids] + ["eng/index"]:
        doc: pycrdt.Doc[Any] = pycrdt.Doc()
        doc.apply_update(await api.node.rooms.diff_for(name, b"\x00"))
        documents.append((doc.get_state(), to_markdown(read_page(doc)), read_index(doc)))
    return rows, documents


async def test_a_page_over_rest(api: PageApi, eng: dict[str, httpx.AsyncClient]) -> None:
    ann, bob = eng["ann"], eng["bob"]
    created = await ann.post(
        "/api/v1/spaces/eng/pages", json={"title": "Roadmap", "markdown": "# Q1\n\n- ship\n"}
    )
    assert created.status_code == 201, created.text
    page = created.json()
    assert page["document"] == f"eng/page/{page['id']}" and page["parent"] is None
    assert page["created_by"] == "ann@local" and page["deleted_at"] is None
    child = (await ann.post("/api/v1/spaces/eng/pages", json={"title": "Child", "parent": page["id"]})).json()
    other = (await ann.post("/api/v1/spaces/eng/pages", json={"title": "Other"})).json()

    tree = (await bob.get("/api/v1/spaces/eng/tree")).json()
    assert tree["document"] == "eng/index"
    assert [(p["title"], p["depth"]) for p in tree["pages"]] == [("Roadmap", 0), ("Child", 1), ("Other", 0)]

    content = await bob.get(f"/api/v1/pages/{page['id']}/content")
    assert content.headers["content-type"].startswith("text/markdown") and content.text == "# Q1\n\n- ship\n"
    html = await bob.get(f"/api/v1/pages/{page['id']}/content", params={"format": "html"})
    assert html.headers["content-type"].startswith("text/html")
    assert html.text == "<h1>Q1</h1><ul><li><p>ship</p></li></ul>"
    text = await bob.get(f"/api/v1/pages/{page['id']}/content", params={"format": "text"})
    assert text.text == "Q1\n\nship\n"

    put = await ann.put(
        f"/api/v1/pages/{page['id']}/content",
        content="new *text*\n",
        headers={"Content-Type": "text/markdown"},
    )
    assert put.status_code == 200, put.text
    assert (await bob.get(f"/api/v1/pages/{page['id']}/content")).text == "new *text*\n"

    moved = await ann.patch(f"/api/v1/pages/{other['id']}", json={"parent": page["id"], "after": None})
    assert moved.status_code == 200 and moved.json()["parent"] == page["id"]
    renamed = await ann.patch(f"/api/v1/pages/{child['id']}", json={"title": "Renamed"})
    assert renamed.json()["title"] == "Renamed" and renamed.json()["parent"] == page["id"]
    tree = (await bob.get("/api/v1/spaces/eng/tree")).json()
    assert [p["title"] for p in tree["pages"]] == ["Roadmap", "Other", "Renamed"]

    deleted = await ann.delete(f"/api/v1/pages/{page['id']}")
    assert sorted(deleted.json()["deleted"]) == sorted([page["id"], child["id"], other["id"]])
    assert (await bob.get("/api/v1/spaces/eng/tree")).json()["pages"] == []
    assert [p["id"] for p in (await bob.get("/api/v1/spaces/eng/trash")).json()["pages"]] == [page["id"]]
    assert (await bob.get(f"/api/v1/pages/{page['id']}")).json()["deleted_at"] is not None
    assert {r.prefix for r in api.revoked} >= {f"eng/page/{page['id']}", f"eng/page/{child['id']}"}
    restored = await ann.post(f"/api/v1/pages/{page['id']}/restore")
    assert restored.status_code == 200 and restored.json()["deleted_at"] is None
    assert len((await bob.get("/api/v1/spaces/eng/tree")).json()["pages"]) == 3


async def test_bad_input_is_a_4xx_json_error_and_changes_nothing(
    api: PageApi, eng: dict[str, httpx.AsyncClient]
) -> None:
    ann, bob, cat, root = eng["ann"], eng["bob"], eng["cat"], eng["root"]
    a = (await ann.post("/api/v1/spaces/eng/pages", json={"title": "A", "markdown": "keep\n"})).json()
    b = (await ann.post("/api/v1/spaces/eng/pages", json={"title": "B", "parent": a["id"]})).json()
    c = (await ann.post("/api/v1/spaces/eng/pages", json={"title": "C", "parent": b["id"]})).json()
    ids = [a["id"], b["id"], c["id"]]
    before = await snapshot(api, ids)
    bomb = "- " * 10_000 + "x\n"  # 10,000 nested lists
    md = {"Content-Type": "text/markdown"}
    pa, content = f"/api/v1/pages/{a['id']}", f"/api/v1/pages/{a['id']}/content"
    new = "/api/v1/spaces/eng/pages"
    cases: list[tuple[Callable[[], Awaitable[httpx.Response]], int, str]] = [
        (lambda: ann.patch(pa, json={"parent": c["id"]}), 409, "move_into_subtree"),
        (lambda: ann.patch(pa, json={"parent": a["id"]}), 409, "move_into_subtree"),
        (lambda: ann.patch(pa, json={"title": "t" * 201}), 422, "invalid_request"),
        (lambda: ann.patch(pa, json={"title": "tab\there"}), 422, "invalid_title"),
        (lambda: ann.post(new, json={"title": "t" * 201}), 422, "invalid_request"),
        (lambda: ann.post(new, json={"title": "x", "parent": "nosuch"}), 404, "parent_not_found"),
        (lambda: ann.post(new, json={"title": "x", "markdown": bomb}), 422, "markdown_too_deep"),
        (lambda: ann.put(content, content=bomb, headers=md), 422, "markdown_too_deep"),
        (lambda: ann.put(content, content=b"x" * (50 * MiB), headers=md), 413, "body_too_large"),
        (lambda: ann.put(content, content=b"x" * (2 * MiB), headers=md), 413, "markdown_too_large"),
        (lambda: ann.put(content, content=b"\xff\xfe", headers=md), 400, "invalid_encoding"),
        (lambda: ann.put(content, content=b"x", headers={"Content-Type": "image/png"}), 415,
         "unsupported_media_type"),
        (lambda: ann.get("/api/v1/pages/nosuchpage000000"), 404, "page_not_found"),
        (lambda: ann.get("/api/v1/pages/..%2F..%2Fetc"), 404, "not_found"),
        (lambda: ann.patch("/api/v1/pages/nosuchpage000000", json={"title": "x"}), 404, "page_not_found"),
        (lambda: ann.delete("/api/v1/pages/nosuchpage000000"), 404, "page_not_found"),
        (lambda: ann.post("/api/v1/pages/nosuchpage000000/restore"), 404, "page_not_found"),
        (lambda: ann.get("/api/v1/spaces/nosuch/tree"), 404, "space_not_found"),
        (lambda: ann.get(content, params={"format": "pdf"}), 422, "invalid_request"),
        (lambda: ann.post(f"/api/v1/pages/{a['id']}/restore"), 409, "not_deleted"),
        (lambda: bob.patch(pa, json={"title": "x"}), 403, "forbidden"),
        (lambda: bob.post(new, json={"title": "x"}), 403, "forbidden"),
        (lambda: cat.get(pa), 404, "page_not_found"),
        (lambda: cat.get("/api/v1/spaces/eng/tree"), 403, "forbidden"),
        (lambda: api.client().get(pa), 401, "unauthenticated"),
    ]  # fmt: skip
    for request, status, code in cases:
        response = await request()
        assert (response.status_code, error_code(response)) == (status, code), response.text
    assert await snapshot(api, ids) == before

    # An archived space refuses every change; its pages stay readable.
    assert (await root.post("/api/v1/spaces/eng/archive")).is_success
    before = await snapshot(api, ids)
    for request in (
        lambda: ann.post("/api/v1/spaces/eng/pages", json={"title": "x"}),
        lambda: ann.patch(f"/api/v1/pages/{b['id']}", json={"parent": None}),
        lambda: ann.patch(f"/api/v1/pages/{b['id']}", json={"title": "x"}),
        lambda: root.delete(f"/api/v1/pages/{c['id']}"),
        lambda: ann.put(f"/api/v1/pages/{a['id']}/content", content="x\n", headers=md),
    ):
        response = await request()
        assert (response.status_code, error_code(response)) == (409, "space_archived"), response.text
    assert await snapshot(api, ids) == before
    assert (await bob.get(f"/api/v1/pages/{a['id']}/content")).text == "keep\n"
