"""REST: threads of a space and their messages (under /api/v1).

Thin, as space_routes.py: pydantic bodies, `ThreadService` decides (with the space's document
grant, as the WebSocket authorizer does) and the error handler renders its refusals as
`{"error": {"code", "message"}}`. Reading needs READ on the space's documents (viewers);
starting a thread and posting need WRITE (editors and up). A post is a server edit authored by
the caller: live clients of the thread see it at once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from ..auth.authenticator import Identity
from ..auth.ports import Principal
from ..domain.spaces import MAX_TITLE
from ..domain.threads import MAX_BODY, Thread, ThreadService
from .context import ApiContext
from .errors import ApiError, errors

__all__ = ["router"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ThreadCreate(_Body):
    title: str = Field("", max_length=MAX_TITLE, description="needed for a space discussion")
    page: str | None = Field(None, max_length=MAX_TITLE, description="the id of the page discussed")


class ThreadOut(BaseModel):
    id: str
    space: str
    page: str | None
    title: str
    created_by: str
    created_at: float
    document: str = Field(description="the Yjs document of the thread: `<space>/thread/<id>`")


class ThreadList(BaseModel):
    threads: list[ThreadOut]


class MessageOut(BaseModel):
    id: str
    author: str = Field(description='"name@site"')
    created: float | None = Field(description="ms since the epoch")
    parent: str | None = Field(description="the id of the message this one replies to")
    body: str
    edited: float | None = Field(description="ms since the epoch, when the author last edited it")
    deleted: bool
    reactions: dict[str, str] = Field(description='"name@site" -> emoji')
    hidden: bool


class ThreadWithMessages(ThreadOut):
    messages: list[MessageOut]


class MessageIn(_Body):
    body: str = Field(min_length=1, max_length=MAX_BODY)
    parent: str | None = Field(None, max_length=128, description="the id of the message replied to")


def _thread(t: Thread) -> dict[str, Any]:
    return {"id": t.id, "space": t.space, "page": t.page, "title": t.title, "created_by": t.created_by,
            "created_at": t.created_at, "document": t.document}  # fmt: skip


def router(ctx: ApiContext) -> APIRouter:
    """The routes; every one answers 401 without credentials (`ctx.person`)."""
    api = APIRouter(tags=["threads"])

    async def principal(identity: Identity = Depends(ctx.person)) -> Principal:
        return identity.principal

    def service() -> ThreadService:
        if ctx.threads is None:
            raise ApiError(503, "unavailable", "threads are not served by this API")
        return ctx.threads

    me = Depends(principal)
    threads = Depends(service)

    @api.post(
        "/spaces/{slug}/threads",
        status_code=201,
        summary="Start a thread: a space discussion (title) or a page's discussion (page)",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def create_thread(
        slug: str, body: ThreadCreate, caller: Principal = me, service: ThreadService = threads
    ) -> ThreadOut:
        thread = await service.create(caller, slug, title=body.title, page=body.page)
        return ThreadOut(**_thread(thread))

    @api.get(
        "/spaces/{slug}/threads",
        summary="The threads of a space, newest first",
        responses=errors(401, 403, 404, 422),
    )
    async def list_threads(slug: str, caller: Principal = me, service: ThreadService = threads) -> ThreadList:
        return ThreadList(threads=[ThreadOut(**_thread(t)) for t in await service.in_space(caller, slug)])

    @api.get(
        "/threads/{thread_id}", summary="A thread and its messages", responses=errors(401, 403, 404, 422)
    )
    async def get_thread(
        thread_id: str, caller: Principal = me, service: ThreadService = threads
    ) -> ThreadWithMessages:
        thread, messages = await service.get(caller, thread_id)
        return ThreadWithMessages(**_thread(thread), messages=[MessageOut(**m) for m in messages])

    @api.post(
        "/threads/{thread_id}/messages",
        status_code=201,
        summary="Post a message as the caller (a server edit live clients see)",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def post_message(
        thread_id: str, body: MessageIn, caller: Principal = me, service: ThreadService = threads
    ) -> MessageOut:
        return MessageOut(**await service.post(caller, thread_id, body.body, parent=body.parent))

    return api
