"""y-websocket framing: one y-protocols message per binary WebSocket frame.

frame = varUint(type) • body
0 sync       varUint(subType) • varUint8Array(data)
1 awareness  varUint8Array(awarenessUpdate)
2 auth       varUint(0 = permission denied) • varString(reason)   (server → client)
3 query-awareness (empty)
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnknownMessageType
from .lib0 import Decoder, Encoder
from .messages import (
    MSG_AWARENESS,
    MSG_QUERY_AWARENESS,
    MSG_SYNC,
    AwarenessMessage,
    QueryAwareness,
    SyncMessage,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_sync_body,
    encode_sync_body,
    require_end,
)

__all__ = ["MSG_AUTH", "AuthPermissionDenied", "YWebsocketMessage", "decode", "encode"]

MSG_AUTH = 2
_AUTH_PERMISSION_DENIED = 0


@dataclass(frozen=True, slots=True)
class AuthPermissionDenied:
    """y-protocols auth message; clients only log it, so a server closes the socket too."""

    reason: str


YWebsocketMessage = (
    SyncStep1 | SyncStep2 | SyncUpdate | AwarenessMessage | AuthPermissionDenied | QueryAwareness
)


def encode(message: YWebsocketMessage) -> bytes:
    encoder = Encoder()
    if isinstance(message, SyncStep1 | SyncStep2 | SyncUpdate):
        encoder.write_var_uint(MSG_SYNC).write_raw(encode_sync_body(message))
    elif isinstance(message, AwarenessMessage):
        encoder.write_var_uint(MSG_AWARENESS).write_var_uint8array(message.update)
    elif isinstance(message, AuthPermissionDenied):
        encoder.write_var_uint(MSG_AUTH).write_var_uint(_AUTH_PERMISSION_DENIED)
        encoder.write_var_string(message.reason)
    else:
        encoder.write_var_uint(MSG_QUERY_AWARENESS)
    return encoder.to_bytes()


def decode(frame: bytes) -> YWebsocketMessage:
    """Decode one frame; raises `ProtocolError` (or its `UnknownMessageType`) on bad bytes."""
    decoder = Decoder(frame)
    kind = decoder.read_var_uint()
    message: YWebsocketMessage
    if kind == MSG_SYNC:
        sync: SyncMessage = decode_sync_body(decoder)
        message = sync
    elif kind == MSG_AWARENESS:
        message = AwarenessMessage(decoder.read_var_uint8array())
    elif kind == MSG_AUTH:
        sub = decoder.read_var_uint()
        if sub != _AUTH_PERMISSION_DENIED:
            raise UnknownMessageType(f"unknown auth message type {sub}")
        message = AuthPermissionDenied(decoder.read_var_string())
    elif kind == MSG_QUERY_AWARENESS:
        message = QueryAwareness()
    else:
        raise UnknownMessageType(f"unknown message type {kind}")
    require_end(decoder, "the message")
    return message
