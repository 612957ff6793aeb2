"""Document names as clients send them, made canonical: one name, one document, either protocol.

A Hocuspocus client names its document in every frame (UTF-8, as the application wrote it);
a y-websocket client puts it in the URL path, where the browser (or `ws`) percent-encodes
what may not appear there: `a b` arrives as `/ws/a%20b`. The path is therefore
percent-decoded, so both protocols reach the same document, except that an escaped slash
(`%2F`) is refused: the separator between a space and its page is only ever a literal `/`.
(The reference y-websocket server does not decode; a name that itself contains `%20` is the
same document as one with a space here.) No Unicode normalisation: names are compared code
point by code point, as the store always has.

Refused (close 4400, which y-websocket 3.1 does not retry): empty names, names over
MAX_NAME_BYTES of UTF-8, and characters that make a name look like another one or break log
lines: C0 and C1 control characters, DEL, the Unicode line and paragraph separators, and the
bidirectional controls (a "Trojan Source" name can display as a different one). The same
rules apply to the session suffix of a Hocuspocus v4 key (`name\\0session`), which is also
capped at MAX_SESSION_BYTES: it is echoed in every frame sent for that document.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from .socket_loop import ClientError

__all__ = [
    "BAD_REQUEST",
    "MAX_NAME_BYTES",
    "MAX_SESSION_BYTES",
    "check_document_key",
    "check_document_name",
    "name_from_raw_path",
]

MAX_NAME_BYTES = 1024
# Providers use a short random id (v4: 11 characters); every frame of the document repeats it.
MAX_SESSION_BYTES = 256
# 4400-4499 make y-websocket 3.1 stop reconnecting: retrying a bad name cannot succeed.
BAD_REQUEST = 4400

_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_ENCODED_SLASH = re.compile(rb"%2[Ff]")


def _check_text(text: str, what: str, limit: int) -> None:
    if len(text) > limit or len(text.encode("utf-8")) > limit:
        raise ClientError(BAD_REQUEST, f"{what} longer than {limit} bytes")
    found = _FORBIDDEN.search(text)
    if found is not None:
        kind = "bidirectional" if ord(found.group()) > 0x9F else "control"
        raise ClientError(BAD_REQUEST, f"{what} contains {kind} characters (U+{ord(found.group()):04X})")


def check_document_name(name: str) -> str:
    """`name` if it is an acceptable document name; raises `ClientError` (4400) otherwise."""
    if not name:
        raise ClientError(BAD_REQUEST, "missing document name")
    _check_text(name, "document name", MAX_NAME_BYTES)
    return name


def check_document_key(key: str) -> tuple[str, str | None]:
    """A Hocuspocus document key, `name` or `name\\0session`: (name, session or None)."""
    name, sep, session = key.partition("\0")
    check_document_name(name)
    if not sep:
        return name, None
    _check_text(session, "session id", MAX_SESSION_BYTES)
    return name, session


def name_from_raw_path(raw_path: bytes, prefix: bytes) -> str:
    """The y-websocket room: the raw path after `prefix`, percent-decoded (strictly: a `%`
    must start an escape), inner slashes kept, query string ignored."""
    path = raw_path.split(b"?", 1)[0]
    if not path.startswith(prefix):
        raise ClientError(BAD_REQUEST, "unexpected path")
    encoded = path[len(prefix) :]
    if len(encoded) > 3 * MAX_NAME_BYTES:  # no name fits in more, whatever it decodes to
        raise ClientError(BAD_REQUEST, f"document name longer than {MAX_NAME_BYTES} bytes")
    if _BAD_PERCENT.search(encoded):
        raise ClientError(BAD_REQUEST, "document name has a malformed percent escape")
    if _ENCODED_SLASH.search(encoded):
        # `/` separates a space from its page; an escaped one would be a second spelling of
        # the separator that proxies and logs read differently, so it is never one.
        raise ClientError(BAD_REQUEST, "document name has an encoded slash (%2F)")
    try:
        name = unquote_to_bytes(encoded).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientError(BAD_REQUEST, "document name is not valid UTF-8") from exc
    return check_document_name(name)
