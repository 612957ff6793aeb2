"""The auth ports: credentials → principal (`Authenticator`), principal × document → grant
(`Authorizer`). Typing Protocols; `app.py` picks the implementations, allow-all by default.

Both are asked once per session (at the y-websocket upgrade, or per Hocuspocus document key)
and again when something is revoked; never per message. Per-message checks read the grant
cached on the session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from ..errors import SamenError

__all__ = [
    "ANONYMOUS",
    "AllowAll",
    "Authenticator",
    "Authorizer",
    "Credentials",
    "Grant",
    "Principal",
    "Unauthenticated",
]


class Grant(IntEnum):
    """What a session may do with its document; ordered, so `grant >= Grant.WRITE` reads."""

    NONE = 0
    READ = 1  # sync and presence; updates are refused
    WRITE = 2
    MODERATE = 3  # write, and what moderation hooks allow moderators only


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a session acts for. `id` is "name@site" (what documents carry as an author);
    the anonymous principal has the empty id."""

    id: str
    name: str = ""
    site_role: str = ""
    token_id: str = ""  # the API token that authenticated it, if any (revocation by token)
    scope: str = "write"  # a token's scope: "read" caps the grant at READ

    @property
    def anonymous(self) -> bool:
        return not self.id


ANONYMOUS = Principal("")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a client presented: a token (Bearer header, `?token=`, or the Hocuspocus auth
    message), its cookies, the Origin header, its address and the Host it asked for."""

    token: str = ""
    cookies: Mapping[str, str] = field(default_factory=dict)
    origin: str = ""
    address: str = ""
    host: str = ""  # the Host header: the server's own origin, for the cookie's Origin check


class Unauthenticated(SamenError):
    """Credentials were presented and are not valid (expired, revoked, forged); `reason`
    is short and safe to show the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Authenticator(Protocol):
    async def authenticate(self, credentials: Credentials) -> Principal:
        """The principal the credentials prove, or ANONYMOUS when none were presented.
        Raises `Unauthenticated` for credentials that do not prove anything."""
        ...


class Authorizer(Protocol):
    async def authorize(self, principal: Principal, document: str) -> Grant:
        """What `principal` may do with `document` (a canonical document name)."""
        ...


class AllowAll:
    """The development default (no authentication): everyone is anonymous and may write."""

    async def authenticate(self, credentials: Credentials) -> Principal:
        return ANONYMOUS

    async def authorize(self, principal: Principal, document: str) -> Grant:
        return Grant.WRITE
