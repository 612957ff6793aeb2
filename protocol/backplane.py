"""Messages between the nodes of one site, over the site's pub/sub (one channel per document).

    message = varString(origin) • varUint(seq) • varUint(durableThrough) • varUint(kind) • body

`origin` names the sending node's incarnation (node id + boot id, so a restarted node starts
a fresh sequence). `seq` counts that origin's messages on this document's channel, from 1,
so a receiver that sees a jump knows a message was dropped. `durableThrough` is the highest
seq of an update from that origin that its store has made durable, so receivers know which
of the updates they hold in memory only are safe elsewhere.

    0 update      varUint8Array(varString(site) • varString(author) • varUint8Array(v1 update)):
                  `site` is where it was made ("" = this site; else the peer site it was
                  replicated from, so whoever stores it keeps its origin), `author` the
                  principal id ("" for anonymous clients and the server)
    1 awareness   varUint8Array(awareness update)
    2 sync-req    varUint8Array(state vector)        "send me what I lack" (to every node)
    3 sync-reply  varString(target) • varUint8Array(update)
    4 heartbeat   (empty)   repeats the last seq, so a dropped final message is noticed too
    5 log-advanced  (empty)   this node committed log rows (wakes the site links)
    6 site-presence varUint8Array(varString(document) • varUint8Array(awareness update)):
                    presence of this node's clients, for the node holding the site links
    7 (retired: site updates are updates whose `site` is not "")
    8 revoke      varUint8Array(varString(principal) • varString(token) • varString(prefix)):
                  re-check the access of the sessions that match (empty fields match all)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .errors import ProtocolError, UnknownMessageType
from .lib0 import Decoder, Encoder, var_string, var_uint

__all__ = [
    "AuthoredUpdate",
    "BackplaneKind",
    "BackplaneMessage",
    "Revocation",
    "decode_backplane",
    "decode_revocation",
    "decode_site_presence",
    "decode_update_payload",
    "encode_backplane",
    "encode_revocation",
    "encode_site_presence",
    "encode_update_payload",
]


class BackplaneKind(IntEnum):
    UPDATE = 0
    AWARENESS = 1
    SYNC_REQUEST = 2
    SYNC_REPLY = 3
    HEARTBEAT = 4
    LOG_ADVANCED = 5
    SITE_PRESENCE = 6
    REVOKE = 8


_EMPTY_KINDS = frozenset({BackplaneKind.HEARTBEAT, BackplaneKind.LOG_ADVANCED})


@dataclass(frozen=True, slots=True)
class BackplaneMessage:
    origin: str
    seq: int
    durable_through: int
    kind: BackplaneKind
    payload: bytes = b""
    target: str = ""  # sync-reply only


def encode_backplane(message: BackplaneMessage) -> bytes:
    encoder = Encoder().write_var_string(message.origin)
    encoder.write_var_uint(message.seq).write_var_uint(message.durable_through).write_var_uint(message.kind)
    if message.kind == BackplaneKind.SYNC_REPLY:
        encoder.write_var_string(message.target)
    if message.kind not in _EMPTY_KINDS:
        encoder.write_var_uint8array(message.payload)
    return encoder.to_bytes()


def decode_backplane(data: bytes) -> BackplaneMessage:
    decoder = Decoder(data)
    origin = decoder.read_var_string()
    seq = decoder.read_var_uint()
    durable_through = decoder.read_var_uint()
    raw_kind = decoder.read_var_uint()
    try:
        kind = BackplaneKind(raw_kind)
    except ValueError:
        raise UnknownMessageType(f"unknown backplane message kind {raw_kind}") from None
    target = decoder.read_var_string() if kind == BackplaneKind.SYNC_REPLY else ""
    payload = b"" if kind in _EMPTY_KINDS else decoder.read_var_uint8array()
    if not decoder.at_end():
        raise ProtocolError("trailing bytes after the backplane message")
    return BackplaneMessage(origin, seq, durable_through, kind, payload, target)


@dataclass(frozen=True, slots=True)
class AuthoredUpdate:
    site: str
    author: str
    update: bytes


def encode_update_payload(site: str, author: str, update: bytes) -> bytes:
    # Once per update a client sends: joined directly, not through an Encoder.
    return b"".join((var_string(site), var_string(author), var_uint(len(update)), update))


def decode_update_payload(payload: bytes) -> AuthoredUpdate:
    decoder = Decoder(payload)
    site, author, update = decoder.read_var_string(), decoder.read_var_string(), decoder.read_var_uint8array()
    if not decoder.at_end():
        raise ProtocolError("trailing bytes after the update")
    return AuthoredUpdate(site, author, update)


@dataclass(frozen=True, slots=True)
class Revocation:
    """Which sessions must have their access checked again: those of `principal`, those
    authenticated by `token`, on documents whose name starts with `prefix` (all that are set)."""

    principal: str = ""
    token: str = ""
    prefix: str = ""


def encode_revocation(revocation: Revocation) -> bytes:
    encoder = Encoder().write_var_string(revocation.principal).write_var_string(revocation.token)
    return encoder.write_var_string(revocation.prefix).to_bytes()


def decode_revocation(payload: bytes) -> Revocation:
    decoder = Decoder(payload)
    revocation = Revocation(decoder.read_var_string(), decoder.read_var_string(), decoder.read_var_string())
    if not decoder.at_end():
        raise ProtocolError("trailing bytes after the revocation")
    return revocation


def encode_site_presence(document: str, update: bytes) -> bytes:
    """The payload of site-presence: a document and an awareness update."""
    return Encoder().write_var_string(document).write_var_uint8array(update).to_bytes()


def decode_site_presence(payload: bytes) -> tuple[str, bytes]:
    decoder = Decoder(payload)
    document, update = decoder.read_var_string(), decoder.read_var_uint8array()
    if not decoder.at_end():
        raise ProtocolError("trailing bytes after the site presence")
    return document, update
