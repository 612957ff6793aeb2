"""The pages table (migration 0009) through the domain database port (server/db.py): one SQL
text for SQLite and PostgreSQL.

Costs, with 10,000 pages in a space (tests/server/domain/test_pages.py counts them): the
tree is one indexed query; a move or a rename writes one row (the position key needs no
renumbering) after reading the new parent's ancestors (one recursive query, as deep as the
tree) and at most one sibling; a delete or a restore writes the rows of the subtree it
moves to or from the trash, in one statement. Writers run in `db.transaction()` after
`SpaceStore.lock_space`, so changes of one space's tree take turns.
"""

from __future__ import annotations

import time

from ..db import Database, Row
from .pages import Page
from .positions import between

__all__ = ["PageStore"]

_COLUMNS = (
    "id, space, parent, position, title, created_by, created_at, updated_by, updated_at, "
    "deleted_at, deleted_by, deleted_root"
)
_UPDATABLE = frozenset({"title", "parent", "position", "updated_by", "updated_at"})

# The live pages under $1 (itself included), in a space ($2).
_SUBTREE = """
WITH RECURSIVE subtree (id) AS (
    SELECT id FROM pages WHERE id = $1 AND space = $2 AND deleted_at IS NULL
    UNION ALL
    SELECT p.id FROM pages p JOIN subtree s ON p.parent = s.id
    WHERE p.space = $2 AND p.deleted_at IS NULL
)
"""
# $1 and the pages above it, with their depth (0 for $1).
_ANCESTORS = """
WITH RECURSIVE up (id, parent, depth) AS (
    SELECT id, parent, 0 FROM pages WHERE id = $1
    UNION ALL
    SELECT p.id, p.parent, up.depth + 1 FROM pages p JOIN up ON p.id = up.parent
    WHERE up.depth < $2
)
SELECT id FROM up
"""
MAX_TREE_DEPTH = 1000  # the ancestor walk's bound: a cycle in the table cannot loop forever


def _page(row: Row) -> Page:
    return Page(
        id=row["id"], space=row["space"], title=row["title"], parent=row["parent"],
        position=row["position"], created_by=row["created_by"], created_at=float(row["created_at"]),
        updated_by=row["updated_by"], updated_at=float(row["updated_at"]),
        deleted_at=None if row["deleted_at"] is None else float(row["deleted_at"]),
        deleted_by=row["deleted_by"], deleted_root=row["deleted_root"],
    )  # fmt: skip


class PageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- reading -------------------------------------------------------------------------

    async def page(self, page_id: str) -> Page | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM pages WHERE id = $1", page_id)
        return None if row is None else _page(row)

    async def is_live(self, space: str, page_id: str) -> bool:
        """The authorizer's question for `<space>/page/<id>`: one primary-key lookup."""
        row = await self.db.fetchrow(
            "SELECT 1 AS live FROM pages WHERE id = $1 AND space = $2 AND deleted_at IS NULL", page_id, space
        )
        return row is not None

    async def tree(self, space: str) -> list[Page]:
        """The live pages of `space`, each list of siblings in order: one query."""
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM pages WHERE space = $1 AND deleted_at IS NULL "
            "ORDER BY parent, position, id",
            space,
        )
        return [_page(r) for r in rows]

    async def trash(self, space: str) -> list[Page]:
        """The pages that were deleted (not those that went with them), newest first."""
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM pages WHERE space = $1 AND deleted_at IS NOT NULL "
            "AND deleted_root = id ORDER BY deleted_at DESC, id",
            space,
        )
        return [_page(r) for r in rows]

    async def ancestors(self, page_id: str) -> list[str]:
        """`page_id` and the pages above it (live or not), nearest first."""
        rows = await self.db.fetch(_ANCESTORS, page_id, MAX_TREE_DEPTH)
        return [r["id"] for r in rows]

    async def neighbours(self, space: str, parent: str, after: str | None) -> tuple[str | None, str | None]:
        """The position keys around the gap after the sibling whose key is `after` (None:
        the start of the list) among the children of `parent`: (after, next)."""
        if after is None:
            row = await self.db.fetchrow(
                "SELECT min(position) AS next FROM pages WHERE space = $1 AND parent = $2",
                space, parent,
            )  # fmt: skip
        else:
            row = await self.db.fetchrow(
                "SELECT min(position) AS next FROM pages WHERE space = $1 AND parent = $2 AND position > $3",
                space, parent, after,
            )  # fmt: skip
        return after, None if row is None else row["next"]

    async def last_position(self, space: str, parent: str) -> str | None:
        """The greatest key among `parent`'s children, those in the trash included (a page
        restored later keeps its place and never shares a key with a newer one)."""
        return await self.db.fetchval(  # type: ignore[no-any-return]
            "SELECT max(position) FROM pages WHERE space = $1 AND parent = $2", space, parent
        )

    async def expired(self, before: float, limit: int) -> list[Page]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM pages WHERE deleted_at IS NOT NULL AND deleted_at < $1 "
            "ORDER BY deleted_at, id LIMIT $2",
            before, limit,
        )  # fmt: skip
        return [_page(r) for r in rows]

    # -- writing -------------------------------------------------------------------------

    async def insert(self, page: Page) -> None:
        await self.db.execute(
            f"INSERT INTO pages ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            page.id, page.space, page.parent, page.position, page.title, page.created_by, page.created_at,
            page.updated_by, page.updated_at, page.deleted_at, page.deleted_by, page.deleted_root,
        )  # fmt: skip

    async def update(self, page_id: str, **changes: str | float) -> None:
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        names = sorted(changes)
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
        await self.db.execute(
            f"UPDATE pages SET {assignments} WHERE id = $1", page_id, *(changes[n] for n in names)
        )

    async def delete_subtree(self, page: Page, actor: str, at: float) -> list[str]:
        """Move `page` and the live pages under it to the trash; returns their ids."""
        rows = await self.db.fetch(_SUBTREE + "SELECT id FROM subtree", page.id, page.space)
        ids = [r["id"] for r in rows]
        await self.db.execute(
            _SUBTREE + "UPDATE pages SET deleted_at = $3, deleted_by = $4, deleted_root = $1 "
            "WHERE id IN (SELECT id FROM subtree)",
            page.id, page.space, at, actor,
        )  # fmt: skip
        return ids

    async def restore_subtree(self, page: Page, *, parent: str, position: str, actor: str) -> list[str]:
        """Bring back the pages deleted with `page` (at `parent`, `position`); their ids."""
        rows = await self.db.fetch(
            "SELECT id FROM pages WHERE deleted_root = $1 AND deleted_at IS NOT NULL", page.id
        )
        await self.db.execute(
            "UPDATE pages SET deleted_at = NULL, deleted_by = '', deleted_root = '' "
            "WHERE deleted_root = $1 AND deleted_at IS NOT NULL",
            page.id,
        )
        await self.update(page.id, parent=parent, position=position, updated_by=actor, updated_at=time.time())
        return [r["id"] for r in rows]

    async def purge(self, page_ids: list[str]) -> int:
        removed = 0
        for page_id in page_ids:
            removed += await self.db.execute(
                "DELETE FROM pages WHERE id = $1 AND deleted_at IS NOT NULL", page_id
            )
        return removed

    # -- positions -----------------------------------------------------------------------

    async def position_after(self, space: str, parent: str, after: str | None) -> str:
        """A key right after the sibling keyed `after` (None: first) under `parent`."""
        low, high = await self.neighbours(space, parent, after)
        return between(low, high)

    async def position_last(self, space: str, parent: str) -> str:
        return between(await self.last_position(space, parent), None)
