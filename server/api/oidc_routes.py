"""Sign-in through the identity provider (auth/oidc.py): `GET /oidc/login` sends the
browser to the provider, `GET /oidc/callback` is where it comes back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse

from ..auth.cookies import over_tls, set_session_cookie
from ..auth.oidc import LOGIN_LIFETIME, OidcClient
from .context import ApiContext, address_of
from .errors import ApiError, errors

__all__ = ["router"]

STATE_COOKIE = "samen_oidc_state"
_REDIRECT: dict[int | str, dict[str, Any]] = {
    302: {"description": "to the identity provider, or back to return_to once signed in"}
}


def _return_path(value: str) -> str:
    # Only paths of this server: an open redirect would hand the session to whoever asked.
    if (
        not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 0x20 for c in value)
    ):
        raise ApiError(422, "invalid_return_to", "return_to must be a path on this server")
    return value


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["oidc"])
    auth = ctx.auth

    def client() -> OidcClient:
        if auth.oidc is None:
            raise ApiError(404, "oidc_not_configured", "sign-in through an identity provider is not set up")
        return auth.oidc

    def redirect_uri(request: Request) -> str:
        if auth.settings.public_url:
            return auth.settings.public_url.rstrip("/") + "/api/v1/oidc/callback"
        return str(request.url_for("oidc_callback"))

    @api.get("/oidc/login", status_code=302, responses={**_REDIRECT, **errors(404, 422)})
    async def oidc_login(
        request: Request, return_to: str = Query("/", max_length=512, description="a path on this server")
    ) -> RedirectResponse:
        url, state = await client().start(redirect_uri(request), _return_path(return_to))
        response = RedirectResponse(url, status_code=302)
        response.set_cookie(
            STATE_COOKIE, state, max_age=int(LOGIN_LIFETIME), path="/api/v1/oidc",
            secure=over_tls(request), httponly=True, samesite="lax",
        )  # fmt: skip
        return response

    @api.get(
        "/oidc/callback",
        name="oidc_callback",
        status_code=302,
        responses={**_REDIRECT, **errors(401, 403, 404, 409, 422)},
    )
    async def oidc_callback(
        request: Request,
        code: str = Query("", max_length=2048),
        state: str = Query("", max_length=256),
        error: str = Query("", max_length=256),
    ) -> RedirectResponse:
        oidc = client()
        if error:
            raise ApiError(401, "idp_refused", "the identity provider did not sign you in")
        # The state must come back to the browser that started the sign-in (login CSRF).
        if not state or not code or request.cookies.get(STATE_COOKIE) != state:
            raise ApiError(401, "invalid_state", "this sign-in was not started in this browser; try again")
        claims, return_to = await oidc.finish(state, code, redirect_uri(request))
        _person, secret = await auth.accounts.sign_in_with_idp(
            claims, issuer=oidc.config.issuer, groups_claim=oidc.config.groups_claim,
            default_role=auth.settings.oidc_default_role, address=address_of(request),
        )  # fmt: skip
        response = RedirectResponse(return_to, status_code=302)
        response.delete_cookie(STATE_COOKIE, path="/api/v1/oidc")
        set_session_cookie(response, secret, secure=over_tls(request), max_age=auth.settings.session_max_age)
        return response

    return api
