"""Which page origins may use a cookie session: the server's own (the `Host` the request was
made to, or SAMEN_PUBLIC_URL), plus SAMEN_ALLOWED_ORIGINS. A browser sends `Origin` with
every WebSocket upgrade and every cross-origin request, and a page cannot forge it; without
this check any site a signed-in person visits could open a WebSocket with their cookie
(cross-site WebSocket hijacking) or post forms to the API.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["OriginPolicy"]


class OriginPolicy:
    def __init__(self, allowed: tuple[str, ...] = (), public_url: str = "") -> None:
        self._allowed = frozenset(origin.lower().rstrip("/") for origin in allowed)
        self._public = public_url.lower().rstrip("/")

    def allows(self, origin: str, host: str) -> bool:
        """Whether a page of `origin` may act with the cookie, on a request sent to `host`
        (the Host header). An empty origin (not a browser, or a same-origin GET) is allowed:
        only browsers carry a person's cookie without the person's script asking."""
        if not origin:
            return True
        origin = origin.lower().rstrip("/")
        if origin == "null":  # sandboxed frames, file:// pages, some redirects
            return False
        if origin in self._allowed or (self._public and origin == self._public):
            return True
        if self._public:
            return False  # the server's own origin is the configured one
        parts = urlsplit(origin)
        return bool(host) and parts.scheme in {"http", "https"} and parts.netloc == host.lower()
