"""REST: pages, the page tree and page content (under /api/v1).

Thin, like space_routes: pydantic validates, `PageService` decides (with the space's rules)
and its `PageError`s / `SpaceError`s become `{"error": {"code", "message"}}`. A page the
caller may not read answers as one that does not exist (404 `page_not_found`).

Content is Markdown both ways: `GET .../content?format=markdown|html|text` answers with that
media type, `PUT .../content` takes a `text/markdown` body (at most 1 MiB) and edits the
live document as the caller: editors who have it open see the new content at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from crdt.pages import MAX_BYTES

from ..auth.authenticator import Identity
from ..auth.ports import Principal
from ..domain.page_service import UNSET, PageService, Unset
from ..domain.pages import MAX_PAGE_TITLE, Page
from .context import ApiContext
from .errors import ApiError, errors

__all__ = ["router"]

_ID = Field(min_length=1, max_length=64, description="a page id")
_MEDIA = {"markdown": "text/markdown", "html": "text/html", "text": "text/plain"}
_MARKDOWN_TYPES = ("text/markdown", "text/plain", "text/x-markdown")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageOut(BaseModel):
    id: str
    space: str
    document: str = Field(description="the Yjs document of the content: <space>/page/<id>")
    title: str
    parent: str | None = Field(description="the parent page's id; null at the top of the tree")
    position: str = Field(description="orders siblings: compare as strings")
    created_by: str
    created_at: float
    updated_by: str
    updated_at: float
    deleted_at: float | None = Field(description="in the trash since; null: live")


class PageCreate(_Body):
    title: str = Field(max_length=MAX_PAGE_TITLE)
    parent: str | None = Field(None, max_length=64, description="the parent page's id; null: the top")
    markdown: str | None = Field(None, max_length=MAX_BYTES, description="the first content, as Markdown")


class PagePatch(_Body):
    title: str | None = Field(None, max_length=MAX_PAGE_TITLE)
    parent: str | None = Field(None, max_length=64, description="move under this page; null: to the top")
    after: str | None = Field(
        None,
        max_length=64,
        description="place after this sibling; null: first. Absent: unchanged (last on a move)",
    )


class Deleted(BaseModel):
    deleted: list[str] = Field(description="the pages moved to the trash: this one and those under it")


class TreeEntry(BaseModel):
    id: str
    title: str
    parent: str | None
    position: str
    depth: int = Field(description="0 at the top of the tree")


class Tree(BaseModel):
    space: str
    document: str = Field(description="the space-index Yjs document with the same tree, live (read-only)")
    pages: list[TreeEntry] = Field(description="depth first, siblings in order")


class Trash(BaseModel):
    pages: list[PageOut]


def _page(page: Page) -> PageOut:
    return PageOut(
        id=page.id, space=page.space, document=page.document, title=page.title, parent=page.parent or None,
        position=page.position, created_by=page.created_by, created_at=page.created_at,
        updated_by=page.updated_by, updated_at=page.updated_at, deleted_at=page.deleted_at,
    )  # fmt: skip


def _tree(slug: str, pages: list[Page]) -> Tree:
    depth: dict[str, int] = {}
    entries = []
    for page in pages:
        depth[page.id] = depth.get(page.parent, -1) + 1 if page.parent else 0
        entries.append(
            TreeEntry(id=page.id, title=page.title, parent=page.parent or None, position=page.position,
                      depth=depth[page.id])
        )  # fmt: skip
    return Tree(space=slug, document=f"{slug}/index", pages=entries)


_CONTENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the page rendered",
        "content": {media: {"schema": {"type": "string"}} for media in _MEDIA.values()},
    }
}
_MARKDOWN_BODY = {
    "requestBody": {
        "required": True,
        "content": {"text/markdown": {"schema": {"type": "string", "maxLength": MAX_BYTES}}},
    }
}


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["pages"])

    def service() -> PageService:
        if ctx.pages is None:
            raise ApiError(503, "unavailable", "pages are not served by this node")
        return ctx.pages

    async def principal(identity: Identity = Depends(ctx.person)) -> Principal:
        return identity.principal

    me = Depends(principal)

    @api.post(
        "/spaces/{slug}/pages",
        status_code=201,
        summary="Create a page (editors), at the end of its parent's children",
        responses=errors(401, 403, 404, 409, 413, 422),
    )
    async def create_page(slug: str, body: PageCreate, caller: Principal = me) -> PageOut:
        page = await service().create(caller, slug, body.title, parent=body.parent, markdown=body.markdown)
        return _page(page)

    @api.get("/spaces/{slug}/tree", summary="The page tree of a space", responses=errors(401, 403, 404, 422))
    async def tree(slug: str, caller: Principal = me) -> Tree:
        return _tree(slug, await service().tree(caller, slug))

    @api.get(
        "/spaces/{slug}/trash",
        summary="Pages in the trash of a space, newest first",
        responses=errors(401, 403, 404, 422),
    )
    async def trash(slug: str, caller: Principal = me) -> Trash:
        return Trash(pages=[_page(p) for p in await service().trash(caller, slug)])

    @api.get("/pages/{page_id}", summary="One page (also in the trash)", responses=errors(401, 404, 422))
    async def get_page(page_id: str, caller: Principal = me) -> PageOut:
        return _page((await service().get(caller, page_id)).page)

    @api.patch(
        "/pages/{page_id}",
        summary="Rename or move a page (never under itself)",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def patch_page(page_id: str, body: PagePatch, caller: Principal = me) -> PageOut:
        sent = body.model_fields_set
        parent: str | Unset | None = body.parent if "parent" in sent else UNSET
        after: str | Unset | None = body.after if "after" in sent else UNSET
        page = await service().update(caller, page_id, title=body.title, parent=parent, after=after)
        return _page(page)

    @api.delete(
        "/pages/{page_id}",
        summary="Move a page and the pages under it to the trash; their editors are closed",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def delete_page(page_id: str, caller: Principal = me) -> Deleted:
        return Deleted(deleted=await service().delete(caller, page_id))

    @api.post(
        "/pages/{page_id}/restore",
        summary="Bring a page (and the pages deleted with it) back from the trash",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def restore_page(page_id: str, caller: Principal = me) -> PageOut:
        return _page(await service().restore(caller, page_id))

    @api.get(
        "/pages/{page_id}/content",
        summary="The content of a page as Markdown, sanitized HTML or plain text",
        response_class=Response,
        responses=_CONTENT_RESPONSES | errors(401, 404, 422),
    )
    async def get_content(
        page_id: str,
        caller: Principal = me,
        format: Annotated[Literal["markdown", "html", "text"], Query()] = "markdown",
    ) -> Response:
        text = await service().content(caller, page_id, format)
        return Response(text, media_type=f"{_MEDIA[format]}; charset=utf-8")

    @api.put(
        "/pages/{page_id}/content",
        summary="Replace the content of a page with Markdown (a live edit, as the caller)",
        openapi_extra=_MARKDOWN_BODY,
        responses=errors(400, 401, 403, 404, 409, 413, 415, 422),
    )
    async def put_content(page_id: str, request: Request, caller: Principal = me) -> PageOut:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in _MARKDOWN_TYPES:
            raise ApiError(415, "unsupported_media_type", "send the content as text/markdown")
        body = await request.body()
        if len(body) > MAX_BYTES:
            raise ApiError(413, "markdown_too_large", f"Markdown is limited to {MAX_BYTES} bytes")
        try:
            markdown = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_encoding", "the body is not UTF-8") from None
        return _page(await service().put_content(caller, page_id, markdown))

    return api
