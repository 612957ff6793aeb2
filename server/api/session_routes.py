"""Sign-in and sign-out with a password, and `GET /me`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ..auth.authenticator import Identity
from ..auth.cookies import SESSION_COOKIE, clear_session_cookie, csrf_token, over_tls, set_session_cookie
from .context import ApiContext, address_of
from .errors import errors
from .models import MeOut, PersonOut, SignedIn, SignIn

__all__ = ["router"]


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["session"])
    auth = ctx.auth

    @api.post("/session", responses=errors(400, 401, 403, 422, 429))
    async def sign_in(body: SignIn, request: Request, response: Response) -> SignedIn:
        """Sign in with name and password: sets the session cookie (HttpOnly, SameSite=Lax)
        and returns the CSRF token for state-changing calls."""
        ctx.check_origin(request)
        person, secret = await auth.accounts.sign_in(body.name, body.password, address_of(request))
        set_session_cookie(response, secret, secure=over_tls(request), max_age=auth.settings.session_max_age)
        return SignedIn(person=PersonOut.of(person), csrf_token=csrf_token(secret))

    @api.delete("/session", status_code=204, responses=errors(401, 403))
    async def sign_out(request: Request, identity: Identity = Depends(ctx.person)) -> Response:
        """End this browser session (its WebSockets close); a token call ends nothing."""
        secret = request.cookies.get(SESSION_COOKIE, "")
        if identity.via == "cookie" and secret:
            await auth.accounts.sign_out(secret, address_of(request))
        response = Response(status_code=204)
        clear_session_cookie(response, secure=over_tls(request))
        return response

    @api.get("/me", responses=errors(401))
    async def me(identity: Identity = Depends(ctx.person)) -> MeOut:
        """Who the caller is; `id` is what documents and thread messages carry as author."""
        csrf = csrf_token(identity.session_secret) if identity.via == "cookie" else None
        return MeOut.of_identity(identity, auth.settings.site, csrf)

    return api
