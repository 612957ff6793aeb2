"""The page service on SQLite and PostgreSQL, with real rooms (an in-process node): the tree
and its order, moves, the trash, permissions, content as Markdown, the space-index document,
refusals that change nothing, and the cost of the tree with 10,000 pages (counted queries)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pycrdt
import pytest

from crdt.document import Document
from crdt.pages.tree import read_index
from server.auth.authorizer import SpaceAuthorizer
from server.auth.ports import Grant, Principal
from server.backplane.local import LocalBackplane
from server.db import Database, Row
from server.domain.page_service import PageService, tree_order
from server.domain.page_store import PageStore
from server.domain.pages import Page, PageError, index_document, new_page_id, refuse_client_index_writes
from server.domain.positions import between
from server.domain.space_service import SpaceService
from server.domain.spaces import JoinPolicy, SpaceError, SpaceRole, Visibility
from server.hooks import Refused, UpdateContext
from server.origins import ClientOrigin, ServerOrigin
from server.store.memory import MemoryStore

from ..nodes import Node, running_node
from .test_spaces import ADMIN, ANN, BOB, CAT, FakePeople, Recorder

EDITOR, VIEWER, STRANGER = ANN, BOB, CAT


class CountingDatabase:
    """The database, with every statement it ran (and the rows it changed) recorded."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.dialect = db.dialect
        self.statements: list[tuple[str, int | None]] = []

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def execute(self, sql: str, *args: Any) -> int:
        changed = await self._db.execute(sql, *args)
        self.statements.append((sql, changed))
        return changed

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        self.statements.append((sql, None))
        return await self._db.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        self.statements.append((sql, None))
        return await self._db.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.statements.append((sql, None))
        return await self._db.fetchval(sql, *args)

    def transaction(self) -> AbstractAsyncContextManager[None]:
        return self._db.transaction()

    def on_pages(self) -> list[tuple[str, int | None]]:
        return [(sql, n) for sql, n in self.statements if "pages" in sql]


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    store = MemoryStore()
    await store.open()
    try:
        async with running_node(store, LocalBackplane("node-a")) as node:
            yield node
    finally:
        await store.close()


@pytest.fixture
def counting(database: Database) -> CountingDatabase:
    return CountingDatabase(database)


@pytest.fixture
async def pages(counting: CountingDatabase, node: Node) -> PageService:
    recorder = Recorder()
    spaces = SpaceService(counting, FakePeople(), recorder.audit, recorder.feed)  # type: ignore[arg-type]
    await spaces.create(ADMIN, "eng", "Engineering", join_policy=JoinPolicy.INVITE)
    await spaces.add_member(ADMIN, "eng", "ann", SpaceRole.EDITOR)
    await spaces.add_member(ADMIN, "eng", "bob", SpaceRole.VIEWER)
    await spaces.create(ADMIN, "sec", "Secret", join_policy=JoinPolicy.INVITE, visibility=Visibility.SECRET)
    service = PageService(spaces, node.rooms, recorder.feed, retention_days=30)
    service.recorder = recorder  # type: ignore[attr-defined]
    return service


async def code_of(operation: Any) -> str:
    with pytest.raises((PageError, SpaceError)) as refused:
        await operation
    return str(refused.value.code)


async def page_rows(db: Database) -> list[dict[str, Any]]:
    return await db.fetch("SELECT * FROM pages ORDER BY id")


async def index_of(node: Node, slug: str) -> dict[str, dict[str, Any]]:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.apply_update(await node.rooms.diff_for(index_document(slug), b"\x00"))
    return read_index(doc)


def titles(tree: list[Page]) -> list[str]:
    return [p.title for p in tree]


async def test_create_order_move_and_the_index(pages: PageService, node: Node) -> None:
    a = await pages.create(EDITOR, "eng", "A")
    b = await pages.create(EDITOR, "eng", "B")
    c = await pages.create(EDITOR, "eng", "C", parent=a.id)
    assert a.document == f"eng/page/{a.id}" and len(a.id) == 16
    assert titles(await pages.tree(VIEWER, "eng")) == ["A", "C", "B"]
    await pages.update(EDITOR, b.id, after=None)  # first
    assert titles(await pages.tree(VIEWER, "eng")) == ["B", "A", "C"]
    await pages.update(EDITOR, c.id, parent=None, after=b.id)  # to the top, after B
    await pages.update(EDITOR, a.id, title="A renamed")
    tree = await pages.tree(VIEWER, "eng")
    assert titles(tree) == ["B", "C", "A renamed"]
    index = await index_of(node, "eng")
    assert index == {p.id: {"title": p.title, "parent": p.parent, "position": p.position} for p in tree}


async def test_a_move_never_goes_into_its_own_subtree(pages: PageService) -> None:
    a = await pages.create(EDITOR, "eng", "A")
    b = await pages.create(EDITOR, "eng", "B", parent=a.id)
    c = await pages.create(EDITOR, "eng", "C", parent=b.id)
    before = await page_rows(pages.db)
    assert await code_of(pages.update(EDITOR, a.id, parent=c.id)) == "move_into_subtree"
    assert await code_of(pages.update(EDITOR, a.id, parent=a.id)) == "move_into_subtree"
    assert await code_of(pages.update(EDITOR, a.id, parent="nosuchpage000000")) == "parent_not_found"
    assert await code_of(pages.update(EDITOR, c.id, after=a.id)) == "invalid_position"  # not a sibling
    assert await code_of(pages.update(EDITOR, a.id, title="t" * 201)) == "invalid_title"
    assert await code_of(pages.create(EDITOR, "eng", "t" * 201)) == "invalid_title"
    assert await code_of(pages.create(EDITOR, "eng", "bell\x07")) == "invalid_title"
    assert await page_rows(pages.db) == before


async def test_permissions(pages: PageService, node: Node) -> None:
    page = await pages.create(EDITOR, "eng", "Roadmap", markdown="# Hi\n")
    assert (await pages.get(VIEWER, page.id)).grant == Grant.READ
    assert await pages.content(VIEWER, page.id, "markdown") == "# Hi\n"
    before = await page_rows(pages.db)
    assert await code_of(pages.create(VIEWER, "eng", "No")) == "forbidden"
    assert await code_of(pages.update(VIEWER, page.id, title="No")) == "forbidden"
    assert await code_of(pages.put_content(VIEWER, page.id, "no\n")) == "forbidden"
    assert await code_of(pages.delete(VIEWER, page.id)) == "forbidden"
    reader = Principal(EDITOR.id, EDITOR.name, EDITOR.site_role, scope="read")
    assert await code_of(pages.update(reader, page.id, title="No")) == "read_only_token"
    # Who may not read the space's documents learns nothing of its pages.
    assert await code_of(pages.get(STRANGER, page.id)) == "page_not_found"
    assert await code_of(pages.content(STRANGER, page.id, "html")) == "page_not_found"
    assert await code_of(pages.tree(STRANGER, "sec")) == "space_not_found"
    assert await code_of(pages.get(EDITOR, "../../etc")) == "page_not_found"
    assert await page_rows(pages.db) == before
    assert await pages.content(EDITOR, page.id, "markdown") == "# Hi\n"


async def test_an_archived_space_refuses_changes(pages: PageService) -> None:
    page = await pages.create(EDITOR, "eng", "Roadmap", markdown="kept\n")
    other = await pages.create(EDITOR, "eng", "Other")
    await pages._spaces.set_archived(ADMIN, "eng", True)
    before = await page_rows(pages.db)
    for operation in (
        pages.create(EDITOR, "eng", "New"),
        pages.update(EDITOR, page.id, title="Renamed"),
        pages.update(EDITOR, page.id, parent=other.id),
        pages.delete(ADMIN, page.id),
        pages.put_content(EDITOR, page.id, "changed\n"),
    ):
        assert await code_of(operation) == "space_archived"
    assert await page_rows(pages.db) == before
    assert await pages.content(VIEWER, page.id, "text") == "kept\n"  # still readable


async def test_the_trash(pages: PageService, node: Node) -> None:
    a = await pages.create(EDITOR, "eng", "A")
    b = await pages.create(EDITOR, "eng", "B", parent=a.id)
    keep = await pages.create(EDITOR, "eng", "Keep")
    authorizer = SpaceAuthorizer(pages._spaces.store, pages.store)
    assert await authorizer.authorize(EDITOR, b.document) == Grant.WRITE
    assert await authorizer.authorize(EDITOR, index_document("eng")) == Grant.READ  # server-written
    for name in ("eng/page/nosuchpage0000000", "eng/page/x", f"eng/page/{b.id}/more", f"sec/page/{b.id}"):
        assert await authorizer.authorize(ADMIN, name) == Grant.NONE, name
    assert await authorizer.authorize(EDITOR, "eng/page") == Grant.WRITE  # an ordinary name
    assert sorted(await pages.delete(EDITOR, a.id)) == sorted([a.id, b.id])
    assert titles(await pages.tree(VIEWER, "eng")) == ["Keep"]
    assert set(await index_of(node, "eng")) == {keep.id}
    assert [p.title for p in await pages.trash(VIEWER, "eng")] == ["A"]
    # Their documents are refused from now on, and the live sessions on them checked again.
    assert await authorizer.authorize(ADMIN, a.document) == Grant.NONE
    assert await authorizer.authorize(EDITOR, b.document) == Grant.NONE
    assert {r.prefix for r in pages.recorder.revocations} == {a.document, b.document}  # type: ignore[attr-defined]
    assert await code_of(pages.update(EDITOR, a.id, title="x")) == "page_deleted"
    assert await code_of(pages.restore(EDITOR, b.id)) == "deleted_with_parent"
    restored = await pages.restore(EDITOR, a.id)
    assert restored.deleted_at is None
    assert titles(await pages.tree(VIEWER, "eng")) == ["A", "B", "Keep"]
    assert set(await index_of(node, "eng")) == {a.id, b.id, keep.id}
    assert await authorizer.authorize(EDITOR, b.document) == Grant.WRITE
    assert await code_of(pages.restore(EDITOR, a.id)) == "not_deleted"
    # A page restored after its parent went back to the top of the tree.
    await pages.delete(EDITOR, b.id)
    await pages.delete(EDITOR, a.id)
    assert (await pages.restore(EDITOR, b.id)).parent == ""
    assert titles(await pages.tree(VIEWER, "eng")) == ["Keep", "B"]


async def test_the_purge_after_the_retention(pages: PageService) -> None:
    old = await pages.create(EDITOR, "eng", "Old")
    await pages.create(EDITOR, "eng", "Live")
    await pages.delete(EDITOR, old.id)
    assert await pages.purge_expired() == 0
    assert await pages.purge_expired(now=old.created_at + 31 * 86400) == 1
    assert [r["title"] for r in await page_rows(pages.db)] == ["Live"]
    assert await code_of(pages.restore(EDITOR, old.id)) == "page_not_found"


async def test_markdown_content_and_bombs(pages: PageService, node: Node) -> None:
    page = await pages.create(EDITOR, "eng", "Doc", markdown="# Title\n\n- [x] done\n")
    assert await pages.content(VIEWER, page.id, "html") == (
        '<h1>Title</h1><ul data-type="taskList"><li data-type="taskItem" data-checked="true">'
        '<input type="checkbox" disabled="" checked=""><p>done</p></li></ul>'
    )
    await pages.put_content(EDITOR, page.id, "new **content**\n")
    assert await pages.content(VIEWER, page.id, "markdown") == "new **content**\n"
    rows, state = await page_rows(pages.db), await node.rooms.diff_for(page.document, b"\x00")
    bomb = "- " * 10_000 + "x\n"  # 10,000 lists, each inside the one before
    assert await code_of(pages.put_content(EDITOR, page.id, bomb)) == "markdown_too_deep"
    assert await code_of(pages.create(EDITOR, "eng", "Bomb", markdown=bomb)) == "markdown_too_deep"
    assert await code_of(pages.put_content(EDITOR, page.id, "x" * (2 * 1024 * 1024))) == "markdown_too_large"
    assert await page_rows(pages.db) == rows
    assert await node.rooms.diff_for(page.document, b"\x00") == state


async def test_ten_thousand_pages(pages: PageService, counting: CountingDatabase, node: Node) -> None:
    """Listing the tree is one query; a move writes one row; the index edit of a move is
    small, whatever the size of the tree."""
    store = PageStore(counting)  # type: ignore[arg-type]
    position: str | None = None
    parents = [""]
    async with counting.transaction():
        for i in range(10_000):
            position = between(position, None)
            parent = parents[i % len(parents)]
            page = Page(new_page_id(), "eng", f"page {i}", parent, position, "ann", 1.0, "ann", 1.0)
            await store.insert(page)
            if i % 100 == 0:
                parents.append(page.id)
    await pages.rebuild_index("eng", ADMIN)
    assert len(await index_of(node, "eng")) == 10_000

    counting.statements.clear()
    tree = await pages.tree(VIEWER, "eng")
    assert len(tree) == 10_000 and len(counting.on_pages()) == 1

    mover, target = tree[-1], tree[5]
    assert mover.parent != target.id
    counting.statements.clear()
    before = await node.rooms.diff_for(index_document("eng"), b"\x00")
    moved = await pages.update(EDITOR, mover.id, parent=target.id, after=None)
    writes = [
        (sql, n)
        for sql, n in counting.statements
        if sql.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))
    ]
    assert [n for _sql, n in writes] == [1]
    after = await node.rooms.diff_for(index_document("eng"), b"\x00")
    assert len(after) - len(before) < 300  # one entry set, not the tree again
    assert (await index_of(node, "eng"))[mover.id]["parent"] == target.id
    assert tree_order(await pages.store.tree("eng"))[6].id == moved.id  # right under its new parent


def test_no_client_writes_a_page_tree() -> None:
    """The before_apply hook app.py registers: also with SAMEN_AUTH=off, where every grant is WRITE."""

    def context(name: str, origin: ClientOrigin | ServerOrigin) -> UpdateContext:
        return UpdateContext(name, b"", origin, Document(), None, None)

    client = ClientOrigin(object(), "ann@here")
    with pytest.raises(Refused) as refused:
        refuse_client_index_writes(context("eng/index", client))
    assert refused.value.cut_off
    refuse_client_index_writes(context("eng/index", ServerOrigin("ann@here", "page tree")))
    refuse_client_index_writes(context("eng/page/0123456789abcdef", client))
    refuse_client_index_writes(context("eng/roadmap", client))
