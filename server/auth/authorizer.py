"""The authorizer of an intranet with spaces: principal × document → grant.

A document belongs to the space named before the first `/` of its name (`eng/roadmap` is in
`eng`); a name without a space, with a path trick, or in a space that does not exist gets
NONE. Otherwise `space_rules.document_grant` decides from the space and the principal's
role in it, and `space_rules.document_access` from what the name is: a page's document needs
a live page of that space (one more primary-key query, for page documents only), the page
tree is read-only.

One indexed query per call (the space's row joined with the principal's membership) and no
cache: the authorizer is asked once per session and again on every revocation, and a
revocation must see what was just committed.
"""

from __future__ import annotations

from typing import Protocol

from ..domain.pages import DocumentKind, document_kind
from ..domain.space_rules import document_access, document_grant
from ..domain.space_store import SpaceStore
from ..domain.spaces import space_of
from .ports import Grant, Principal

__all__ = ["SpaceAuthorizer"]


class LivePages(Protocol):
    """`domain.page_store.PageStore`."""

    async def is_live(self, space: str, page_id: str) -> bool: ...


class SpaceAuthorizer:
    def __init__(self, store: SpaceStore, pages: LivePages, *, anonymous_read: bool = False) -> None:
        self._store = store
        self._pages = pages
        self._anonymous_read = anonymous_read

    async def authorize(self, principal: Principal, document: str) -> Grant:
        slug = space_of(document)
        if slug is None:
            return Grant.NONE
        if principal.anonymous:
            if not self._anonymous_read:
                return Grant.NONE  # no query: anonymous sockets are cheap to refuse
            space = await self._store.space(slug)
            grant = document_grant(principal, space, None, anonymous_read=True)
        else:
            space, role = await self._store.space_and_role(slug, principal.id)
            grant = document_grant(principal, space, role, anonymous_read=self._anonymous_read)
        kind, page_id = document_kind(document)
        live = kind is DocumentKind.PAGE and grant > Grant.NONE and await self._pages.is_live(slug, page_id)
        return document_access(grant, kind, live)
