"""Credentials as a WebSocket upgrade presents them (DESIGN.md: a token may come as
`Authorization: Bearer`, as the `token` query parameter — the y-websocket provider's
`params` — or later in the Hocuspocus auth message; a browser brings its cookie)."""

from __future__ import annotations

from starlette.datastructures import Headers, QueryParams
from starlette.requests import HTTPConnection, cookie_parser

from .ports import Credentials

__all__ = ["credentials_from"]


def credentials_from(connection: HTTPConnection) -> Credentials:
    # Read from the scope, not through `connection.query_params`/`.headers`/`.cookies`: those
    # are cached on the connection, and a WebSocket lives for hours (about 1.5 KiB each).
    scope = connection.scope
    headers = Headers(scope=scope)
    token = QueryParams(scope.get("query_string", b"")).get("token", "")
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if not token and scheme.lower() == "bearer":
        token = value.strip()
    client = connection.client
    return Credentials(
        token=token,
        cookies=cookie_parser(headers.get("cookie", "")),
        origin=headers.get("origin", ""),
        address=client.host if client else "",
        host=headers.get("host", ""),
    )
