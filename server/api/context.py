"""What routers are built with, and the dependencies that tell a route who calls it.

    def router(ctx: ApiContext) -> APIRouter:
        api = APIRouter(tags=["things"])

        @api.get("/things", responses=errors(401))
        async def things(caller: Identity = Depends(ctx.person)) -> list[Thing]: ...

        return api

- `ctx.caller`: the Identity of the request (cookie session or Bearer token) or None.
- `ctx.person`: the same, 401 without credentials.
- `ctx.admin`: a site admin, else 403.

All three enforce, for state-changing methods (anything but GET/HEAD/OPTIONS): with a cookie,
the CSRF header and an allowed Origin (auth/cookies.py says why); with a token, scope write.
Bad credentials are 401 even where anonymous would do: they are never silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from ..auth.authenticator import Identity
from ..auth.cookies import CSRF_HEADER, csrf_matches
from ..auth.credentials import credentials_from
from ..auth.ports import Unauthenticated
from ..auth.service import AuthServices
from ..domain.page_service import PageService
from ..domain.space_service import PeopleDirectory, SpaceService
from ..domain.threads import ThreadService
from .errors import ApiError

__all__ = ["ApiContext", "address_of"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def address_of(request: Request) -> str:
    return request.client.host if request.client else ""


@dataclass(slots=True, init=False)
class ApiContext:
    auth: AuthServices
    spaces: SpaceService
    pages: PageService | None  # None: the page routes answer 503 (an API without rooms)
    threads: ThreadService | None  # None: the thread routes answer 503 (an API without rooms)

    def __init__(
        self,
        auth: AuthServices,
        spaces: SpaceService | None = None,
        pages: PageService | None = None,
        threads: ThreadService | None = None,
    ) -> None:
        self.auth = auth
        directory = PeopleDirectory(auth.people)
        self.spaces = spaces or SpaceService(auth.db, directory, auth.audit, auth.revocations)
        self.pages = pages
        self.threads = threads

    async def caller(self, request: Request) -> Identity | None:
        credentials = credentials_from(request)
        try:
            identity = await self.auth.authenticator.identify(credentials, check_origin=False)
        except Unauthenticated as exc:
            raise ApiError(401, "unauthenticated", exc.reason) from None
        if identity is None or request.method in SAFE_METHODS:
            return identity
        if identity.via == "cookie":
            self.check_origin(request)
            if not csrf_matches(identity.session_secret, request.headers.get(CSRF_HEADER, "")):
                raise ApiError(
                    403, "csrf_failed", f"state-changing calls with a cookie need the {CSRF_HEADER} header"
                )
        elif identity.principal.scope != "write":
            raise ApiError(403, "insufficient_scope", "this token may only read")
        return identity

    def check_origin(self, request: Request) -> None:
        """A page of a foreign origin may not act with the cookie (nor sign in: login CSRF)."""
        if not self.auth.origins.allows(request.headers.get("origin", ""), request.headers.get("host", "")):
            raise ApiError(403, "bad_origin", "requests from this origin are not accepted")

    async def person(self, request: Request) -> Identity:
        identity = await self.caller(request)
        if identity is None:
            raise ApiError(401, "unauthenticated", "sign in, or send a token as Authorization: Bearer")
        return identity

    async def admin(self, request: Request) -> Identity:
        identity = await self.person(request)
        if identity.principal.site_role != "admin":
            raise ApiError(403, "forbidden", "only site admins may do this")
        return identity
