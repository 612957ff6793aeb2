"""The y-protocols messages both wire protocols carry: sync, awareness, query-awareness.

y-websocket frames are `varUint(type) • body`; Hocuspocus frames put `varString(document)`
in front of the same thing. This module owns the shared bodies; `ywebsocket.py` and
`hocuspocus.py` own the framing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ProtocolError, UnknownMessageType
from .lib0 import Decoder, Encoder

__all__ = [
    "MSG_AWARENESS",
    "MSG_QUERY_AWARENESS",
    "MSG_SYNC",
    "SYNC_STEP1",
    "SYNC_STEP2",
    "SYNC_UPDATE",
    "AwarenessMessage",
    "QueryAwareness",
    "SyncMessage",
    "SyncStep1",
    "SyncStep2",
    "SyncUpdate",
    "decode_sync_body",
    "encode_sync_body",
]

MSG_SYNC = 0
MSG_AWARENESS = 1
MSG_QUERY_AWARENESS = 3

SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2


@dataclass(frozen=True, slots=True)
class SyncStep1:
    """ "Here is my state vector; send me what I lack"."""

    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    """The answer to SyncStep1: a v1 update holding what the asker lacks."""

    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    """A live v1 document update."""

    update: bytes


SyncMessage = SyncStep1 | SyncStep2 | SyncUpdate


@dataclass(frozen=True, slots=True)
class AwarenessMessage:
    """An encoded awareness update (see `awareness.py` for its contents)."""

    update: bytes


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    """Asks the peer to send every awareness state it knows."""


def encode_sync_body(message: SyncMessage) -> bytes:
    encoder = Encoder()
    if isinstance(message, SyncStep1):
        encoder.write_var_uint(SYNC_STEP1).write_var_uint8array(message.state_vector)
    elif isinstance(message, SyncStep2):
        encoder.write_var_uint(SYNC_STEP2).write_var_uint8array(message.update)
    else:
        encoder.write_var_uint(SYNC_UPDATE).write_var_uint8array(message.update)
    return encoder.to_bytes()


def decode_sync_body(decoder: Decoder) -> SyncMessage:
    sub_type = decoder.read_var_uint()
    payload = decoder.read_var_uint8array()
    if sub_type == SYNC_STEP1:
        return SyncStep1(payload)
    if sub_type == SYNC_STEP2:
        return SyncStep2(payload)
    if sub_type == SYNC_UPDATE:
        return SyncUpdate(payload)
    raise UnknownMessageType(f"unknown sync message type {sub_type}")


def require_end(decoder: Decoder, what: str) -> None:
    """One message per frame: bytes after the message are a malformed frame."""
    if not decoder.at_end():
        raise ProtocolError(f"{decoder.remaining} trailing bytes after {what}")
