"""Hocuspocus framing: every frame names its document, so many documents share one socket.

    frame = varString(documentKey) • varUint(type) • body
    0 sync, 1 awareness, 3 query-awareness: the y-protocols bodies of `messages.py`
    2 auth: varUint(sub) • ...   0 token (C→S: token [• provider version]; S→C: empty =
            "send your token again"), 1 permission denied (reason), 2 authenticated (scope)
    5 stateless: varString(payload)
    7 close: C→S empty (detach the document), S→C varString(reason)
    8 sync status: varUint(1 = applied, 0 = rejected), S→C
    Ping 09 / Pong 0a (v4 only): bare one-byte frames without a document name.

The document key is the provider's name, or `name + "\\0" + sessionId` with v4's
`sessionAwareness`; replies must carry the full key, so it is kept verbatim.
Types 4 (SyncReply) and 6 (BroadcastStateless) are server-internal; a client never sends them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ProtocolError, UnknownMessageType
from .lib0 import Decoder, Encoder
from .messages import (
    MSG_AWARENESS,
    MSG_QUERY_AWARENESS,
    MSG_SYNC,
    AwarenessMessage,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_sync_body,
    encode_sync_body,
    require_end,
)

__all__ = [
    "PING_FRAME",
    "PONG_FRAME",
    "SCOPE_READ_ONLY",
    "SCOPE_READ_WRITE",
    "AuthToken",
    "AuthTokenRequest",
    "Authenticated",
    "CloseDocument",
    "HocuspocusFrame",
    "HocuspocusMessage",
    "PermissionDenied",
    "Ping",
    "Pong",
    "Stateless",
    "SyncStatus",
    "decode_frame",
    "encode_frame",
    "split_document_key",
]

MSG_AUTH = 2
MSG_STATELESS = 5
MSG_CLOSE = 7
MSG_SYNC_STATUS = 8

AUTH_TOKEN = 0
AUTH_PERMISSION_DENIED = 1
AUTH_AUTHENTICATED = 2

SCOPE_READ_WRITE = "read-write"
SCOPE_READ_ONLY = "readonly"

PING_FRAME = b"\x09"
PONG_FRAME = b"\x0a"


@dataclass(frozen=True, slots=True)
class AuthToken:
    """C→S. An empty token is how providers send "no token". v4 appends its version."""

    token: str
    provider_version: str | None = None


@dataclass(frozen=True, slots=True)
class AuthTokenRequest:
    """S→C auth token message with an empty body: "send your token again"."""


@dataclass(frozen=True, slots=True)
class PermissionDenied:
    reason: str = "permission-denied"


@dataclass(frozen=True, slots=True)
class Authenticated:
    scope: str = SCOPE_READ_WRITE


@dataclass(frozen=True, slots=True)
class Stateless:
    payload: str


@dataclass(frozen=True, slots=True)
class CloseDocument:
    """C→S (reason None): detach this document. S→C: the server closed it, with a reason."""

    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """S→C acknowledgement of a client's SyncStep2 or Update."""

    applied: bool


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Pong:
    pass


HocuspocusMessage = (
    SyncStep1
    | SyncStep2
    | SyncUpdate
    | AwarenessMessage
    | QueryAwareness
    | AuthToken
    | AuthTokenRequest
    | PermissionDenied
    | Authenticated
    | Stateless
    | CloseDocument
    | SyncStatus
)


@dataclass(frozen=True, slots=True)
class HocuspocusFrame:
    key: str
    message: HocuspocusMessage

    @property
    def document(self) -> str:
        return split_document_key(self.key)[0]


def split_document_key(key: str) -> tuple[str, str | None]:
    """`name\\0session` → (name, session); a plain name has no session."""
    name, sep, session = key.partition("\0")
    return name, (session if sep else None)


def encode_frame(key: str, message: HocuspocusMessage) -> bytes:
    encoder = Encoder().write_var_string(key)
    if isinstance(message, SyncStep1 | SyncStep2 | SyncUpdate):
        encoder.write_var_uint(MSG_SYNC).write_raw(encode_sync_body(message))
    elif isinstance(message, AwarenessMessage):
        encoder.write_var_uint(MSG_AWARENESS).write_var_uint8array(message.update)
    elif isinstance(message, QueryAwareness):
        encoder.write_var_uint(MSG_QUERY_AWARENESS)
    elif isinstance(message, AuthToken):
        encoder.write_var_uint(MSG_AUTH).write_var_uint(AUTH_TOKEN).write_var_string(message.token)
        if message.provider_version is not None:
            encoder.write_var_string(message.provider_version)
    elif isinstance(message, AuthTokenRequest):
        encoder.write_var_uint(MSG_AUTH).write_var_uint(AUTH_TOKEN)
    elif isinstance(message, PermissionDenied):
        encoder.write_var_uint(MSG_AUTH).write_var_uint(AUTH_PERMISSION_DENIED)
        encoder.write_var_string(message.reason)
    elif isinstance(message, Authenticated):
        encoder.write_var_uint(MSG_AUTH).write_var_uint(AUTH_AUTHENTICATED).write_var_string(message.scope)
    elif isinstance(message, Stateless):
        encoder.write_var_uint(MSG_STATELESS).write_var_string(message.payload)
    elif isinstance(message, CloseDocument):
        encoder.write_var_uint(MSG_CLOSE)
        if message.reason is not None:
            encoder.write_var_string(message.reason)
    else:
        encoder.write_var_uint(MSG_SYNC_STATUS).write_var_uint(1 if message.applied else 0)
    return encoder.to_bytes()


def decode_frame(frame: bytes) -> HocuspocusFrame | Ping | Pong:
    """Decode one frame from either side; raises `ProtocolError` on bad bytes."""
    # v4 keepalive frames carry no document name; a one-byte frame can never be a named
    # frame (that needs at least a length and a type), so there is no ambiguity.
    if frame == PING_FRAME:
        return Ping()
    if frame == PONG_FRAME:
        return Pong()
    decoder = Decoder(frame)
    key = decoder.read_var_string()
    message = _decode_body(decoder)
    require_end(decoder, "the message")
    return HocuspocusFrame(key, message)


def _decode_body(decoder: Decoder) -> HocuspocusMessage:
    kind = decoder.read_var_uint()
    if kind == MSG_SYNC:
        return decode_sync_body(decoder)
    if kind == MSG_AWARENESS:
        return AwarenessMessage(decoder.read_var_uint8array())
    if kind == MSG_QUERY_AWARENESS:
        return QueryAwareness()
    if kind == MSG_AUTH:
        return _decode_auth(decoder)
    if kind == MSG_STATELESS:
        return Stateless(decoder.read_var_string())
    if kind == MSG_CLOSE:
        return CloseDocument(None if decoder.at_end() else decoder.read_var_string())
    if kind == MSG_SYNC_STATUS:
        status = decoder.read_var_uint()
        if status > 1:
            raise ProtocolError(f"sync status {status} is neither 0 nor 1")
        return SyncStatus(status == 1)
    raise UnknownMessageType(f"unknown message type {kind}")


def _decode_auth(decoder: Decoder) -> HocuspocusMessage:
    sub = decoder.read_var_uint()
    if sub == AUTH_TOKEN:
        if decoder.at_end():
            return AuthTokenRequest()
        token = decoder.read_var_string()
        version = None if decoder.at_end() else decoder.read_var_string()
        return AuthToken(token, version)
    if sub == AUTH_PERMISSION_DENIED:
        return PermissionDenied(decoder.read_var_string())
    if sub == AUTH_AUTHENTICATED:
        return Authenticated(decoder.read_var_string())
    raise UnknownMessageType(f"unknown auth message type {sub}")
