"""Threads: a page's discussion or a space discussion with a title.

The row (migration 0010) says that a thread exists, in which space, about which page, and
who started it; the messages live in its Yjs document `<space>/thread/<id>`, whose wire
contract `crdt/thread_rules.py` states and the thread guard (server/thread_guard.py)
enforces for every client update. REST reads that document and posts into it with a server
edit authored by the caller (for bots), so a REST post reaches live clients like any other.

Who may do what follows the space's document grant (space_rules.document_grant), so a
WebSocket and a REST call never disagree: READ (viewers, readers of an open space) lists
threads and reads messages; WRITE (editors and up) starts threads, posts and reacts. A
space one may not see answers 404 `space_not_found`, a thread one may not read 404
`thread_not_found`, exactly as one that does not exist.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from crdt.document import Document
from crdt.thread_doc import message_update, read_messages

from ..auth.ports import Grant, Principal
from ..db import Database, Row
from ..errors import RoomLoadError
from ..origins import ServerOrigin
from .errors import DomainError, Invalid, NotFound
from .space_rules import Action, check, check_changeable, check_writable, document_grant
from .space_service import SpaceService
from .spaces import MAX_TITLE, Space, SpaceError, check_title

__all__ = [
    "MAX_BODY",
    "Rooms",
    "Thread",
    "ThreadService",
    "ThreadStore",
    "thread_document",
    "thread_of",
]

MAX_BODY = 64 * 1024  # characters of a message posted over REST
_THREAD_ID = re.compile(r"^[0-9a-f]{16}$")
_COLUMNS = "id, space, page, title, created_by, created_at"

T = TypeVar("T")
PageExists = Callable[[str, str], Awaitable[bool]]  # (space, page id) -> exists?


class Rooms(Protocol):
    """What the service needs of `rooms.RoomManager`."""

    async def read(self, name: str, look: Callable[[Document], T]) -> T: ...

    async def edit(
        self, name: str, change: Callable[[Document], bytes | None], origin: ServerOrigin
    ) -> bool: ...


class Unavailable(DomainError):
    status = 503


def thread_document(space: str, thread_id: str) -> str:
    return f"{space}/thread/{thread_id}"


def thread_of(document: str) -> tuple[str, str] | None:
    """(space, thread id) of a thread document's name, else None."""
    parts = document.split("/")
    if len(parts) == 3 and parts[1] == "thread" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


@dataclass(frozen=True, slots=True)
class Thread:
    id: str
    space: str
    page: str | None
    title: str
    created_by: str
    created_at: float

    @property
    def document(self) -> str:
        return thread_document(self.space, self.id)


def _thread(row: Row) -> Thread:
    return Thread(
        row["id"], row["space"], row["page"], row["title"], row["created_by"], float(row["created_at"])
    )


class ThreadStore:
    """The threads table through the domain database port (one SQL text for both backends)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, thread: Thread) -> None:
        await self.db.execute(
            f"INSERT INTO threads ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
            thread.id, thread.space, thread.page, thread.title, thread.created_by, thread.created_at,
        )  # fmt: skip

    async def get(self, thread_id: str) -> Thread | None:
        if not _THREAD_ID.match(thread_id):
            return None
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM threads WHERE id = $1", thread_id)
        return None if row is None else _thread(row)

    async def exists(self, space: str, thread_id: str) -> bool:
        """Does `<space>/thread/<thread_id>` name a thread (the authorizer's question)?"""
        thread = await self.get(thread_id)
        return thread is not None and thread.space == space

    async def in_space(self, space: str) -> list[Thread]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM threads WHERE space = $1 ORDER BY created_at DESC, id", space
        )
        return [_thread(row) for row in rows]


class ThreadService:
    def __init__(
        self,
        db: Database,
        spaces: SpaceService,
        rooms: Rooms,
        *,
        page_exists: PageExists | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = ThreadStore(db)
        self._spaces = spaces
        self._rooms = rooms
        self._page_exists = page_exists
        self._clock = clock

    async def _space(self, actor: Principal, slug: str, need: Grant) -> Space:
        """The space, if `actor` has `need` on its documents; else the space's refusal."""
        space, standing = await self._spaces.load(actor, slug)
        check(Action.SEE, actor, space, standing)
        assert space is not None
        if need >= Grant.WRITE:
            check_writable(actor)
            check_changeable(space)
        if document_grant(actor, space, standing.role) < need:
            verb = "write in" if need >= Grant.WRITE else "read"
            raise SpaceError(403, "forbidden", f"only members who may {verb} this space's threads may")
        return space

    async def _thread(self, actor: Principal, thread_id: str, need: Grant) -> Thread:
        thread = await self.store.get(thread_id)
        if thread is None:
            raise NotFound("thread_not_found", "no such thread")
        try:
            await self._space(actor, thread.space, need)
        except SpaceError as exc:
            if exc.code == "space_not_found":  # a thread of a space one cannot see does not exist
                raise NotFound("thread_not_found", "no such thread") from None
            raise
        return thread

    async def create(
        self, actor: Principal, slug: str, *, title: str = "", page: str | None = None
    ) -> Thread:
        """A space discussion (a title) or a page's discussion (a page id, title optional)."""
        space = await self._space(actor, slug, Grant.WRITE)
        if page is None or title:
            title = check_title(title)  # a space discussion needs its title
        if page is not None:
            if not page or len(page) > MAX_TITLE or "/" in page:
                raise Invalid("invalid_page", "page must be a page id")
            if self._page_exists is not None and not await self._page_exists(space.slug, page):
                raise NotFound("page_not_found", "no such page in this space")
        thread = Thread(secrets.token_hex(8), space.slug, page, title, actor.id, self._clock())
        await self.store.create(thread)
        return thread

    async def in_space(self, actor: Principal, slug: str) -> list[Thread]:
        await self._space(actor, slug, Grant.READ)
        return await self.store.in_space(slug)

    async def get(self, actor: Principal, thread_id: str) -> tuple[Thread, list[dict[str, Any]]]:
        """The thread and its messages (JSON), as the document holds them now."""
        thread = await self._thread(actor, thread_id, Grant.READ)
        try:
            messages: list[dict[str, Any]] = await self._rooms.read(
                thread.document, lambda document: read_messages(document.ydoc)
            )
        except RoomLoadError:
            raise Unavailable("unavailable", "the thread could not be loaded; try again") from None
        return thread, messages

    async def post(
        self, actor: Principal, thread_id: str, body: str, *, parent: str | None = None
    ) -> dict[str, Any]:
        """Post a message as `actor`: a server edit that live clients see at once."""
        thread = await self._thread(actor, thread_id, Grant.WRITE)
        if not body.strip() or len(body) > MAX_BODY:
            raise Invalid("invalid_body", f"body must hold 1 to {MAX_BODY} characters")
        message = {
            "id": secrets.token_hex(8),
            "author": actor.id,
            "created": float(round(self._clock() * 1000)),
            "body": body,
        }
        if parent is not None:
            message["parent"] = parent

        def change(document: Document) -> bytes:
            if parent is not None and parent not in {m["id"] for m in read_messages(document.ydoc)}:
                raise NotFound("message_not_found", "parent names no message of this thread")
            return message_update(document.full_update(), message)

        try:
            await self._rooms.edit(thread.document, change, ServerOrigin(actor.id, reason="thread message"))
        except RoomLoadError:
            raise Unavailable("unavailable", "the thread could not be loaded; try again") from None
        return {**message, "parent": parent, "edited": None, "deleted": False, "reactions": {},
                "hidden": False}  # fmt: skip
