"""The authorizer of an intranet with spaces: principal × document → grant.

A document belongs to the space named before the first `/` of its name (`eng/roadmap` is in
`eng`); a name without a space, with a path trick, or in a space that does not exist gets
NONE. Otherwise `space_rules.document_grant` decides from the space and the principal's
role in it, and `space_rules.document_access` from what the name is: a page's document needs
a live page of that space (one more primary-key query, for page documents only), the page
tree is read-only. Other documents the server names itself (`<space>/thread/<id>`: a
thread) must also exist: `named` maps such a kind to its "does it exist in this space"
question, and a name of that kind that names nothing gets NONE, like a space that does not
exist.

One indexed query per call (the space's row joined with the principal's membership) and no
cache: the authorizer is asked once per session and again on every revocation, and a
revocation must see what was just committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from ..domain.pages import DocumentKind, document_kind
from ..domain.space_rules import document_access, document_grant
from ..domain.space_store import SpaceStore
from ..domain.spaces import space_of
from .ports import Grant, Principal

__all__ = ["Exists", "SpaceAuthorizer"]

Exists = Callable[[str, str], Awaitable[bool]]  # (space, id) -> does it exist?


class LivePages(Protocol):
    """`domain.page_store.PageStore`."""

    async def is_live(self, space: str, page_id: str) -> bool: ...


class SpaceAuthorizer:
    def __init__(
        self,
        store: SpaceStore,
        pages: LivePages,
        *,
        anonymous_read: bool = False,
        named: Mapping[str, Exists] | None = None,
    ) -> None:
        self._store = store
        self._pages = pages
        self._anonymous_read = anonymous_read
        self._named = dict(named or {})

    async def authorize(self, principal: Principal, document: str) -> Grant:
        slug = space_of(document)
        if slug is None:
            return Grant.NONE
        grant = await self._space_grant(principal, slug)
        if grant is Grant.NONE:
            return grant
        if not await self._names_something(slug, document):
            return Grant.NONE
        kind, page_id = document_kind(document)
        live = kind is DocumentKind.PAGE and await self._pages.is_live(slug, page_id)
        return document_access(grant, kind, live)

    async def _names_something(self, slug: str, document: str) -> bool:
        parts = document.split("/")
        exists = self._named.get(parts[1]) if len(parts) == 3 else None
        return exists is None or await exists(slug, parts[2])

    async def _space_grant(self, principal: Principal, slug: str) -> Grant:
        if principal.anonymous:
            if not self._anonymous_read:
                return Grant.NONE  # no query: anonymous sockets are cheap to refuse
            space = await self._store.space(slug)
            return document_grant(principal, space, None, anonymous_read=True)
        space, role = await self._store.space_and_role(slug, principal.id)
        return document_grant(principal, space, role, anonymous_read=self._anonymous_read)
