"""Document names as clients send them."""

from __future__ import annotations

from .socket_loop import ClientError

__all__ = ["BAD_REQUEST", "MAX_NAME_BYTES", "check_document_name", "name_from_raw_path"]

MAX_NAME_BYTES = 1024
# 4400-4499 make y-websocket 3.1 stop reconnecting: retrying a bad name cannot succeed.
BAD_REQUEST = 4400


def check_document_name(name: str) -> str:
    if not name:
        raise ClientError(BAD_REQUEST, "missing document name")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ClientError(BAD_REQUEST, f"document name longer than {MAX_NAME_BYTES} bytes")
    if any(ord(ch) < 0x20 for ch in name):
        raise ClientError(BAD_REQUEST, "document name contains control characters")
    return name


def name_from_raw_path(raw_path: bytes, prefix: bytes) -> str:
    """The y-websocket room: the raw path after `prefix`, not percent-decoded, inner slashes
    kept, query string ignored (what the reference server does with `req.url`)."""
    path = raw_path.split(b"?", 1)[0]
    if not path.startswith(prefix):
        raise ClientError(BAD_REQUEST, "unexpected path")
    try:
        return check_document_name(path[len(prefix) :].decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ClientError(BAD_REQUEST, "document name is not valid UTF-8") from exc
