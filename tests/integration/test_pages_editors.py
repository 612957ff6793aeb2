"""Acceptance 1 and 2 with real editors: y-prosemirror with the Tiptap schema (no browser)
over the real Hocuspocus provider, against a real Samen process with SAMEN_AUTH=required.

1. Two writers type concurrently (one transaction, one Yjs update, per keystroke) headings,
   lists, bold and italic, a link, a mention, a task list and a table; both converge, and the
   server's Markdown and HTML of the page are exactly the expected text.
2. Each Markdown fixture (tests/fixtures/markdown) imported over REST shows in a real
   y-prosemirror client with the same structure, and the Markdown exported afterwards (the
   client has opened, normalised and synced it) equals the input.
Also: a live editor of a page that goes to the trash is closed, and cannot open it again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pycrdt
import pytest

from clients.sync_client import SyncClient
from crdt.pages import parse_markdown, structure
from crdt.pages.tree import read_index
from server.domain.space_service import OPERATOR
from server.domain.spaces import JoinPolicy, SpaceRole

from .intranet import intranet
from .prosemirror_driver import DriverError, ProsemirrorDriver, from_prosemirror_json
from .server_process import SamenServer

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "markdown"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[SamenServer, dict[str, str]]]:
    data = tmp_path / "data"
    async with intranet(data) as net:
        await net.add_people({"ann": "member", "cem": "member", "bob": "member"})
        await net.spaces.create(OPERATOR, "eng", "Engineering", join_policy=JoinPolicy.INVITE)
        for name in ("ann", "cem"):
            await net.spaces.add_member(OPERATOR, "eng", name, SpaceRole.EDITOR)
        await net.spaces.add_member(OPERATOR, "eng", "bob", SpaceRole.VIEWER)
        tokens = dict(net.tokens)
    async with SamenServer(data, env={"SAMEN_AUTH": "required"}) as running:
        yield running, tokens


@pytest.fixture
async def pm() -> AsyncIterator[ProsemirrorDriver]:
    async with ProsemirrorDriver() as driver:
        yield driver
        assert driver.uncaught_errors() == [], driver.stderr_text()


def rest(server: SamenServer, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.http_url, headers={"Authorization": f"Bearer {token}"}, trust_env=False, timeout=30
    )


def text(value: str, *marks: dict[str, Any]) -> dict[str, Any]:
    return {"op": "type", "text": value, "marks": list(marks)}


def block(node_type: str, content: list[dict[str, Any]] | None = None, **attrs: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"type": node_type}
    if attrs:
        node["attrs"] = attrs
    if content is not None:
        node["content"] = content
    return node


def para(value: str = "") -> dict[str, Any]:
    return block("paragraph", [{"type": "text", "text": value}] if value else None)


BOLD, ITALIC = {"type": "bold"}, {"type": "italic"}
LINK = {"type": "link", "attrs": {"href": "https://example.com/x"}}

WRITER_A = [  # under "## A"
    {"op": "block", "node": para()},
    text("Hello "), text("bold", BOLD), text(" and "), text("italic", ITALIC), text(" "), text("link", LINK),
    text(" for "),
    {"op": "inline", "node": {"type": "mention", "attrs": {"id": "cem@local", "label": "cem"}}},
    text("."),
    {"op": "block", "node": block("heading", level=3)},
    text("Lists"),
    {"op": "block", "node": block("bulletList", [
        block("listItem", [para("one")]),
        block("listItem", [para("two"), block("bulletList", [block("listItem", [para("nested")])])]),
    ])},
    text(" more"),
]  # fmt: skip
WRITER_B = [  # under "## B"
    {"op": "block", "node": block("heading", level=3)},
    text("Plan"),
    {"op": "block", "node": block("taskList", [block("taskItem", [para()], checked=False)])},
    text("write tests"),
    {"op": "check"},
    {"op": "block", "node": block("table", [
        block("tableRow", [block("tableHeader", [para("Who")]), block("tableHeader", [para("What")])]),
        block("tableRow", [block("tableCell", [para("ann")]), block("tableCell", [para("docs")])]),
    ])},
    text(" "), text("done", ITALIC),
    {"op": "block", "node": block("orderedList", [block("listItem", [para()])], start=1)},
    text("step one"),
]  # fmt: skip

EXPECTED_MARKDOWN = """## A

Hello **bold** and *italic* [link](https://example.com/x) for @cem@local.

### Lists

- one
- two
  - nested more

## B

### Plan

- [x] write tests

| Who | What |
| --- | --- |
| ann | docs *done* |

1. step one
"""
EXPECTED_HTML = (
    "<h2>A</h2>"
    '<p>Hello <strong>bold</strong> and <em>italic</em> <a href="https://example.com/x" '
    'rel="noopener noreferrer nofollow">link</a> for '
    '<span data-type="mention" data-id="cem@local" data-label="cem">@cem@local</span>.</p>'
    "<h3>Lists</h3>"
    "<ul><li><p>one</p></li><li><p>two</p><ul><li><p>nested more</p></li></ul></li></ul>"
    "<h2>B</h2><h3>Plan</h3>"
    '<ul data-type="taskList"><li data-type="taskItem" data-checked="true">'
    '<input type="checkbox" disabled="" checked=""><p>write tests</p></li></ul>'
    "<table><tbody><tr><th><p>Who</p></th><th><p>What</p></th></tr>"
    "<tr><td><p>ann</p></td><td><p>docs <em>done</em></p></td></tr></tbody></table>"
    "<ol><li><p>step one</p></li></ol>"
)


async def test_two_editors_type_concurrently_and_the_server_renders_exactly(
    server: tuple[SamenServer, dict[str, str]], pm: ProsemirrorDriver
) -> None:
    samen, tokens = server
    async with rest(samen, tokens["ann"]) as ann:
        created = await ann.post(
            "/api/v1/spaces/eng/pages", json={"title": "Plan", "markdown": "## A\n\n## B\n"}
        )
        assert created.status_code == 201, created.text
        page = created.json()
        await asyncio.gather(
            pm.open("ann", samen.hocuspocus_url, page["document"], tokens["ann"]),
            pm.open("cem", samen.hocuspocus_url, page["document"], tokens["cem"]),
        )
        await asyncio.gather(pm.script("ann", "A", WRITER_A), pm.script("cem", "B", WRITER_B))
        doc = await pm.converged(["ann", "cem"])
        # Acknowledged means durable: the server's rendering has every keystroke.
        markdown = await ann.get(f"/api/v1/pages/{page['id']}/content", params={"format": "markdown"})
        html = await ann.get(f"/api/v1/pages/{page['id']}/content", params={"format": "html"})
    assert markdown.text == EXPECTED_MARKDOWN
    assert html.text == EXPECTED_HTML
    assert structure(from_prosemirror_json(doc)) == structure(parse_markdown(EXPECTED_MARKDOWN))


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.md")))
async def test_markdown_import_shows_in_a_real_editor_and_exports_the_same(
    server: tuple[SamenServer, dict[str, str]], pm: ProsemirrorDriver, name: str
) -> None:
    samen, tokens = server
    source = (FIXTURES / name).read_text()
    async with rest(samen, tokens["ann"]) as ann:
        created = await ann.post("/api/v1/spaces/eng/pages", json={"title": name, "markdown": source})
        assert created.status_code == 201, created.text
        page = created.json()
        await pm.open("reader", samen.hocuspocus_url, page["document"], tokens["bob"])
        await pm.open("editor", samen.hocuspocus_url, page["document"], tokens["cem"])
        shown = await pm.converged(["reader", "editor"])  # the editor's normalisation is synced too
        exported = await ann.get(f"/api/v1/pages/{page['id']}/content")
    assert structure(from_prosemirror_json(shown)) == structure(parse_markdown(source))
    assert exported.text == source


async def test_an_editor_of_a_deleted_page_is_closed(
    server: tuple[SamenServer, dict[str, str]], pm: ProsemirrorDriver
) -> None:
    samen, tokens = server
    async with rest(samen, tokens["ann"]) as ann:
        page = (
            await ann.post("/api/v1/spaces/eng/pages", json={"title": "Gone", "markdown": "bye\n"})
        ).json()
        await pm.open("cem", samen.hocuspocus_url, page["document"], tokens["cem"])
        assert (await ann.delete(f"/api/v1/pages/{page['id']}")).status_code == 200
        assert await pm.refused("cem")  # the live editor is told: PermissionDenied for the page
        with pytest.raises(DriverError, match="authentication failed"):
            await pm.open("late", samen.hocuspocus_url, page["document"], tokens["cem"])
        assert (await ann.post(f"/api/v1/pages/{page['id']}/restore")).status_code == 200
        assert (await ann.get(f"/api/v1/pages/{page['id']}/content")).text == "bye\n"


async def test_the_tree_reaches_clients_live_and_is_read_only(
    server: tuple[SamenServer, dict[str, str]],
) -> None:
    """A viewer's plain Yjs client on `eng/index` sees pages created, moved, renamed and
    deleted as they happen; what it writes there itself is refused."""
    samen, tokens = server
    async with (
        rest(samen, tokens["ann"]) as ann,
        SyncClient(samen.hocuspocus_url, "eng/index", protocol="hocuspocus", token=tokens["bob"]) as viewer,
    ):
        await viewer.wait_synced()

        def tree() -> dict[str, dict[str, Any]]:
            return read_index(viewer.doc)

        a = (await ann.post("/api/v1/spaces/eng/pages", json={"title": "A"})).json()
        b = (await ann.post("/api/v1/spaces/eng/pages", json={"title": "B"})).json()
        await viewer.wait_for(lambda: set(tree()) == {a["id"], b["id"]})
        await ann.patch(f"/api/v1/pages/{b['id']}", json={"parent": a["id"], "title": "B2"})
        await viewer.wait_for(lambda: tree().get(b["id"], {}).get("parent") == a["id"])
        assert tree()[b["id"]]["title"] == "B2"
        await ann.delete(f"/api/v1/pages/{a['id']}")
        await viewer.wait_for(lambda: tree() == {})

        viewer.doc.get("pages", type=pycrdt.Map)["forged"] = {"title": "x", "parent": "", "position": "1h"}
        await viewer.wait_for(lambda: viewer.rejected > 0)  # SyncStatus false: not applied
        assert (await ann.get("/api/v1/spaces/eng/tree")).json()["pages"] == []
    async with SyncClient(
        samen.hocuspocus_url, "eng/index", protocol="hocuspocus", token=tokens["ann"]
    ) as fresh:
        await fresh.wait_synced()
        assert read_index(fresh.doc) == {}
