"""The Authenticator of Samen (auth/ports.py): credentials → the person they prove.

- A token (Bearer header, `?token=`, the Hocuspocus auth message) must be a live personal
  API token (domain/tokens.py); the principal carries its id and scope.
- Otherwise the `samen_session` cookie must open a live browser session, and the page's
  `Origin`, if sent, must be allowed (auth/origins.py): a WebSocket with a valid cookie from
  a foreign page is refused (no cross-site WebSocket hijacking).
- No credentials: ANONYMOUS (the authorizer decides what anonymous may do).

Credentials that were presented and prove nothing (unknown, expired, revoked, a suspended
person, a foreign origin) raise `Unauthenticated`: never a silent downgrade to anonymous.
Every call reads the database: it runs once per session (and again on revocation), never
per message.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.people import People, Person
from ..domain.tokens import ApiTokens, TokenInfo
from ..domain.web_sessions import WebSessions
from .cookies import SESSION_COOKIE
from .origins import OriginPolicy
from .ports import ANONYMOUS, Credentials, Principal, Unauthenticated

__all__ = ["Identity", "SamenAuthenticator"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request or socket acts for, and how it proved it."""

    principal: Principal
    person: Person
    via: str  # "token" or "cookie"
    token: TokenInfo | None = None
    session_secret: str = ""  # the cookie value (for the CSRF check), when via == "cookie"


class SamenAuthenticator:
    def __init__(
        self, people: People, tokens: ApiTokens, sessions: WebSessions, origins: OriginPolicy
    ) -> None:
        self.people = people
        self.tokens = tokens
        self.sessions = sessions
        self.origins = origins

    async def authenticate(self, credentials: Credentials) -> Principal:
        identity = await self.identify(credentials, check_origin=True)
        return ANONYMOUS if identity is None else identity.principal

    async def identify(self, credentials: Credentials, *, check_origin: bool) -> Identity | None:
        """None when no credentials were presented. `check_origin`: refuse a cookie used by a
        page of a foreign origin (WebSockets always; REST checks it for unsafe methods)."""
        if credentials.token:
            return await self._by_token(credentials.token)
        secret = credentials.cookies.get(SESSION_COOKIE, "")
        if not secret:
            return None
        if check_origin and not self.origins.allows(credentials.origin, credentials.host):
            raise Unauthenticated("the session cookie may not be used from this origin")
        session = await self.sessions.lookup(secret)
        if session is None:
            raise Unauthenticated("the session expired or was signed out; sign in again")
        person = await self._active(session.person)
        return Identity(self._principal(person), person, "cookie", session_secret=secret)

    async def _by_token(self, token: str) -> Identity:
        info = await self.tokens.verify(token)
        if info is None:
            raise Unauthenticated("the token is not valid (unknown, expired or revoked)")
        person = await self._active(info.person)
        principal = self._principal(person, token_id=info.id, scope=info.scope)
        return Identity(principal, person, "token", token=info)

    async def _active(self, name: str) -> Person:
        person = await self.people.get(name)
        if person is None or person.suspended:
            raise Unauthenticated("this account is suspended")
        return person

    @staticmethod
    def _principal(person: Person, token_id: str = "", scope: str = "write") -> Principal:
        return Principal(person.id, person.name, person.site_role, token_id, scope)
