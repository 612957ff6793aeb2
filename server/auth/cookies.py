"""The browser session cookie and its CSRF token.

Cookie `samen_session`: the session secret; HttpOnly (no script reads it), SameSite=Lax (not
sent on cross-site subrequests and POSTs), Secure when the request came over TLS (directly,
or through a trusted proxy saying X-Forwarded-Proto: https), Path=/ (the WebSocket
endpoints need it too).

CSRF: state-changing REST calls authenticated by this cookie must carry the header
`X-CSRF-Token` with the session's CSRF token, and an `Origin`, if sent, of an allowed origin.
The token is derived from the session secret (SHA-256 of a label and the secret: whoever
has it can compute it, nobody else can), so nothing more is stored; the client gets it in
the sign-in answer, from `GET /api/v1/me`, and in the readable cookie `samen_csrf`. Why a
header and not only SameSite: SameSite=Lax does not cover sibling subdomains (same site,
other origin) or older browsers, and a cross-origin page cannot set a custom header without
a CORS preflight, which Samen never grants. Calls with a Bearer token are exempt: a browser
never adds that header on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from starlette.requests import HTTPConnection
from starlette.responses import Response

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "clear_session_cookie",
    "csrf_matches",
    "csrf_token",
    "over_tls",
    "set_session_cookie",
]

SESSION_COOKIE = "samen_session"
CSRF_COOKIE = "samen_csrf"
CSRF_HEADER = "x-csrf-token"


def csrf_token(session_secret: str) -> str:
    digest = hashlib.sha256(b"samen-csrf\x00" + session_secret.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def csrf_matches(session_secret: str, presented: str) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(session_secret), presented)


def over_tls(connection: HTTPConnection) -> bool:
    """uvicorn sets the scheme from X-Forwarded-Proto when the proxy is trusted."""
    return connection.url.scheme in {"https", "wss"}


def set_session_cookie(response: Response, secret: str, *, secure: bool, max_age: float) -> None:
    age = int(max_age)
    response.set_cookie(
        SESSION_COOKIE, secret, max_age=age, path="/", secure=secure, httponly=True, samesite="lax"
    )
    response.set_cookie(
        CSRF_COOKIE, csrf_token(secret), max_age=age, path="/", secure=secure, httponly=False, samesite="lax"
    )


def clear_session_cookie(response: Response, *, secure: bool) -> None:
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=httponly, samesite="lax")
