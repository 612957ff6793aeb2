"""What can be done with pages, by whom: the operations of the REST API.

Permissions are the space's (space_rules): who may read the space's documents reads its
pages, its tree and their content (a page of a space the caller may not read answers as
one that does not exist: 404); editors and above write; an archived space refuses every
change (409 `space_archived`); a read-only token changes nothing.

Each change of the tree runs in one transaction that first locks the space's row (the
space service's lock), so concurrent moves in one space take turns and a move can never
close a cycle. After the commit, and only then: the space-index document `<space>/index`
is edited by the server (clients see the tree change live), a page's content is written
(`markdown` on create, `PUT` of content) as a server edit authored by the caller, and for
pages that went to the trash the live sessions on their documents are checked again
(`Revoker`), which closes them: the authorizer refuses a page in the trash.

Markdown is parsed and pages rendered in the CPU worker process (crdt/pages is pure), so
a large page costs the event loop nothing but the Yjs edit itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from crdt.document import Document
from crdt.pages import Format, Node, PageContentError, parse_markdown, render_state, replacement_update
from crdt.pages.tree import IndexEntry, index_update
from protocol.backplane import Revocation

from ..auth.ports import Grant, Principal
from ..origins import ServerOrigin
from .page_store import PageStore
from .pages import Page, PageError, check_page_title, index_document, is_page_id, new_page_id, page_document
from .space_rules import (
    Action,
    Standing,
    check,
    check_changeable,
    check_signed_in,
    check_writable,
    document_grant,
    sees,
)
from .space_service import Revoker, SpaceService
from .spaces import Space, SpaceError, check_slug

__all__ = ["UNSET", "Documents", "Offload", "PageService", "PageView", "Unset"]

log = logging.getLogger(__name__)

T = TypeVar("T")
DocumentChange = Callable[[Document], bytes | None]
_EMPTY_STATE_VECTOR = b"\x00"
# Above this many pages going to the trash at once, the whole space's sessions are checked
# again (one revocation) rather than one revocation per page.
_REVOKE_EACH_UP_TO = 50
_PURGE_BATCH = 500


class Unset:
    """A PATCH field that was not sent (`None` means "the top" / "first")."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


class Documents(Protocol):
    """`server.rooms.RoomManager`: the server's own edits and reads of documents."""

    async def edit(self, name: str, change: DocumentChange, origin: ServerOrigin) -> bool: ...

    async def diff_for(self, name: str, state_vector: bytes) -> bytes: ...


class Offload(Protocol):
    """`server.cpu_pool.CpuPool`."""

    async def call(self, fn: Callable[..., T], *args: Any) -> T: ...


class _Threads:
    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)


@dataclass(frozen=True, slots=True)
class PageView:
    page: Page
    grant: Grant  # the caller's, on the page's space


def _not_found() -> PageError:
    return PageError(404, "page_not_found", "no such page")


class PageService:
    def __init__(
        self,
        spaces: SpaceService,
        documents: Documents,
        revoker: Revoker,
        *,
        retention_days: float = 30.0,
        cpu: Offload | None = None,
    ) -> None:
        self.db = spaces.db
        self.store = PageStore(spaces.db)
        self._spaces = spaces
        self._documents = documents
        self._revoker = revoker
        self._cpu: Offload = cpu or _Threads()
        self.retention = retention_days * 86400.0

    # -- access --------------------------------------------------------------------------

    async def _space(self, actor: Principal, slug: str, *, lock: bool) -> tuple[Space | None, Standing]:
        store = self._spaces.store
        space = await (store.lock_space(slug) if lock else store.space(slug))
        if space is None:
            return None, Standing()
        return space, await store.standing(slug, actor.id)

    async def _access(self, actor: Principal, page_id: str, *, lock: bool = False) -> tuple[PageView, Space]:
        """The page and the caller's grant on it; 404 for a page the caller may not read."""
        check_signed_in(actor)
        page = await self.store.page(page_id) if is_page_id(page_id) else None
        if page is None:
            raise _not_found()
        space, standing = await self._space(actor, page.space, lock=lock)
        if space is None or not sees(actor, space, standing):
            raise _not_found()
        grant = document_grant(actor, space, standing.role)
        if grant < Grant.READ:
            raise _not_found()
        if lock:  # read again under the lock: the row may have changed since
            page = await self.store.page(page_id)
            if page is None:
                raise _not_found()
        return PageView(page, grant), space

    async def _space_access(self, actor: Principal, slug: str, *, lock: bool = False) -> tuple[Space, Grant]:
        check_signed_in(actor)
        space, standing = (
            await self._space(actor, slug, lock=lock) if _plausible(slug) else (None, Standing())
        )
        space = check(Action.SEE, actor, space, standing)
        grant = document_grant(actor, space, standing.role)
        if grant < Grant.READ:
            raise PageError(403, "forbidden", "only members of this space may read its pages")
        return space, grant

    @staticmethod
    def _check_write(actor: Principal, space: Space, grant: Grant) -> None:
        check_writable(actor)
        check_changeable(space)  # before the grant: an archived space caps it at READ
        if grant < Grant.WRITE:
            raise PageError(403, "forbidden", "only editors of this space may change its pages")

    # -- reading -------------------------------------------------------------------------

    async def get(self, actor: Principal, page_id: str) -> PageView:
        view, _space = await self._access(actor, page_id)
        return view

    async def tree(self, actor: Principal, slug: str) -> list[Page]:
        """The live pages of the space in tree order (depth first, siblings by position)."""
        await self._space_access(actor, slug)
        return tree_order(await self.store.tree(slug))

    async def trash(self, actor: Principal, slug: str) -> list[Page]:
        await self._space_access(actor, slug)
        return await self.store.trash(slug)

    async def content(self, actor: Principal, page_id: str, fmt: Format) -> str:
        view, _space = await self._access(actor, page_id)
        state = await self._documents.diff_for(view.page.document, _EMPTY_STATE_VECTOR)
        return await self._cpu.call(render_state, state, fmt)

    # -- changing ------------------------------------------------------------------------

    async def create(
        self,
        actor: Principal,
        slug: str,
        title: str,
        *,
        parent: str | None = None,
        markdown: str | None = None,
    ) -> Page:
        title = check_page_title(title)
        content = await self._parse(markdown) if markdown is not None else None
        now = time.time()
        async with self.db.transaction():
            space, grant = await self._space_access(actor, slug, lock=True)
            self._check_write(actor, space, grant)
            parent_id = await self._live_parent(space, parent or "")
            page = Page(
                id=new_page_id(), space=space.slug, title=title, parent=parent_id,
                position=await self.store.position_last(space.slug, parent_id),
                created_by=actor.id, created_at=now, updated_by=actor.id, updated_at=now,
            )  # fmt: skip
            await self.store.insert(page)
        await self._index(actor, space.slug, [page])
        if content is not None:
            await self._write_content(actor, page, content, "import")
        return page

    async def update(
        self,
        actor: Principal,
        page_id: str,
        *,
        title: str | None = None,
        parent: str | Unset | None = UNSET,
        after: str | Unset | None = UNSET,
    ) -> Page:
        """Rename and/or move. `parent`: the new parent (None: the top); `after`: the
        sibling to follow (None: first); a move to another parent without `after` puts the
        page last. A page never moves under itself or a page under it."""
        changes: dict[str, str | float] = {}
        if title is not None:
            changes["title"] = check_page_title(title)
        async with self.db.transaction():
            view, space = await self._access(actor, page_id, lock=True)
            page = view.page
            self._check_write(actor, space, view.grant)
            if page.deleted:
                raise PageError(409, "page_deleted", "the page is in the trash; restore it first")
            new_parent = page.parent if isinstance(parent, Unset) else (parent or "")
            if new_parent != page.parent:
                new_parent = await self._live_parent(space, new_parent)
                if new_parent and page.id in await self.store.ancestors(new_parent):
                    raise PageError(
                        409, "move_into_subtree", "a page cannot move under itself or a page under it"
                    )
                changes["parent"] = new_parent
            if not isinstance(after, Unset):
                changes["position"] = await self._position_after(space, new_parent, page, after)
            elif "parent" in changes:
                changes["position"] = await self.store.position_last(space.slug, new_parent)
            changes = {k: v for k, v in changes.items() if getattr(page, k) != v}
            if changes:
                changes |= {"updated_by": actor.id, "updated_at": time.time()}
                await self.store.update(page.id, **changes)
        updated = replace(page, **changes)  # type: ignore[arg-type]
        if changes:
            await self._index(actor, space.slug, [updated])
        return updated

    async def delete(self, actor: Principal, page_id: str) -> list[str]:
        """To the trash, with the pages under it; returns their ids."""
        async with self.db.transaction():
            view, space = await self._access(actor, page_id, lock=True)
            self._check_write(actor, space, view.grant)
            if view.page.deleted:
                raise PageError(409, "page_deleted", "the page is in the trash already")
            ids = await self.store.delete_subtree(view.page, actor.id, time.time())
        await self._index(actor, space.slug, [], removed=ids)
        await self._close_editors(space, ids)
        return ids

    async def restore(self, actor: Principal, page_id: str) -> Page:
        """Out of the trash, with the pages deleted with it; at its old place, or at the end
        of the top of the tree if its parent is gone."""
        async with self.db.transaction():
            view, space = await self._access(actor, page_id, lock=True)
            page = view.page
            self._check_write(actor, space, view.grant)
            if not page.deleted:
                raise PageError(409, "not_deleted", "the page is not in the trash")
            if page.deleted_root != page.id:
                raise PageError(
                    409, "deleted_with_parent", "the page went with a page above it; restore that one"
                )
            parent, position = page.parent, page.position
            above = await self.store.page(parent) if parent else None
            if parent and (above is None or above.deleted):
                parent, position = "", await self.store.position_last(space.slug, "")
            ids = await self.store.restore_subtree(page, parent=parent, position=position, actor=actor.id)
            restored = [p for p in [await self.store.page(i) for i in ids] if p is not None]
        await self._index(actor, space.slug, restored)
        return next(p for p in restored if p.id == page.id)

    async def put_content(self, actor: Principal, page_id: str, markdown: str) -> Page:
        content = await self._parse(markdown)
        view, space = await self._access(actor, page_id)
        self._check_write(actor, space, view.grant)
        if view.page.deleted:
            raise PageError(409, "page_deleted", "the page is in the trash; restore it first")
        await self._write_content(actor, view.page, content, "markdown")
        now = time.time()
        await self.store.update(view.page.id, updated_by=actor.id, updated_at=now)
        return replace(view.page, updated_by=actor.id, updated_at=now)

    # -- the trash's purge ---------------------------------------------------------------

    async def purge_expired(self, now: float | None = None) -> int:
        """Remove the pages in the trash for longer than the retention; how many."""
        before = (time.time() if now is None else now) - self.retention
        removed = 0
        while batch := await self.store.expired(before, _PURGE_BATCH):
            removed += await self.store.purge([p.id for p in batch])
            if len(batch) < _PURGE_BATCH:
                break
        if removed:
            log.info("purged %d pages from the trash", removed)
        return removed

    async def run_purge(self, interval: float = 3600.0) -> None:
        """The purge task, owned by the app lifespan."""
        while True:
            try:
                await self.purge_expired()
            except Exception:
                log.exception("purging the trash failed; trying again in %.0f s", interval)
            await asyncio.sleep(interval)

    # -- helpers -------------------------------------------------------------------------

    async def _parse(self, markdown: str) -> Node:
        try:
            return await self._cpu.call(parse_markdown, markdown)
        except PageContentError as exc:
            status = 413 if exc.code == "too_large" else 422
            raise PageError(status, f"markdown_{exc.code}", exc.reason) from None

    async def _live_parent(self, space: Space, parent: str) -> str:
        if not parent:
            return ""
        page = await self.store.page(parent) if is_page_id(parent) else None
        if page is None or page.space != space.slug or page.deleted:
            raise PageError(404, "parent_not_found", "no such parent page in this space")
        return page.id

    async def _position_after(self, space: Space, parent: str, page: Page, after: str | None) -> str:
        if after is None:
            return await self.store.position_after(space.slug, parent, None)
        sibling = await self.store.page(after) if is_page_id(after) else None
        if sibling is None or sibling.space != space.slug or sibling.deleted or sibling.parent != parent:
            raise PageError(422, "invalid_position", "`after` must be a page with the same parent")
        if sibling.id == page.id:
            raise PageError(422, "invalid_position", "a page cannot follow itself")
        return await self.store.position_after(space.slug, parent, sibling.position)

    async def _write_content(self, actor: Principal, page: Page, content: Node, reason: str) -> None:
        def change(document: Document) -> bytes:
            return replacement_update(document.full_update(), content)

        await self._documents.edit(page.document, change, ServerOrigin(actor.id, reason))

    async def _index(
        self, actor: Principal, slug: str, pages: Iterable[Page], removed: Iterable[str] = ()
    ) -> None:
        upserts = {p.id: index_entry(p) for p in pages}
        gone = list(removed)

        def change(document: Document) -> bytes | None:
            return index_update(document.full_update(), upserts, gone) or None

        try:
            await self._documents.edit(index_document(slug), change, ServerOrigin(actor.id, "page tree"))
        except Exception:
            # The tables are committed; `rebuild_index` repairs the mirror. Never report a
            # committed change as failed.
            log.exception("the page tree of %r could not be written", slug)

    async def rebuild_index(self, slug: str, actor: Principal) -> None:
        """Write the whole tree of `slug` into its index document (after a failure)."""
        upserts = {p.id: index_entry(p) for p in await self.store.tree(slug)}

        def change(document: Document) -> bytes | None:
            return index_update(document.full_update(), upserts, replace=True) or None

        await self._documents.edit(index_document(slug), change, ServerOrigin(actor.id, "page tree"))

    async def _close_editors(self, space: Space, ids: list[str]) -> None:
        revocations = (
            [Revocation(prefix=page_document(space.slug, i)) for i in ids]
            if len(ids) <= _REVOKE_EACH_UP_TO
            else [Revocation(prefix=space.prefix)]
        )
        for revocation in revocations:
            await self._spaces.revoke(revocation)


def index_entry(page: Page) -> IndexEntry:
    return {"title": page.title, "parent": page.parent, "position": page.position}


def tree_order(pages: list[Page]) -> list[Page]:
    """Depth first, each page's children by position (iterative: trees may be deep)."""
    children: dict[str, list[Page]] = {}
    for page in sorted(pages, key=lambda p: (p.position, p.id)):
        children.setdefault(page.parent, []).append(page)
    known = {p.id for p in pages}
    # Pages whose parent is not live (cannot happen through the service) are shown at the top.
    roots = children.get("", []) + [p for p in pages if p.parent and p.parent not in known]
    out: list[Page] = []
    stack = list(reversed(roots))
    while stack:
        page = stack.pop()
        out.append(page)
        stack.extend(reversed(children.get(page.id, [])))
    return out


def _plausible(slug: str) -> bool:
    try:
        check_slug(slug)
    except SpaceError:
        return False
    return True
