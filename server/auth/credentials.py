"""Credentials as a WebSocket upgrade presents them (DESIGN.md: a token may come as
`Authorization: Bearer`, as the `token` query parameter — the y-websocket provider's
`params` — or later in the Hocuspocus auth message; a browser brings its cookie)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from .ports import Credentials

__all__ = ["credentials_from"]


def credentials_from(connection: HTTPConnection) -> Credentials:
    token = connection.query_params.get("token", "")
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    if not token and scheme.lower() == "bearer":
        token = value.strip()
    client = connection.client
    return Credentials(
        token=token,
        cookies=dict(connection.cookies),
        origin=connection.headers.get("origin", ""),
        address=client.host if client else "",
        host=connection.headers.get("host", ""),
    )
