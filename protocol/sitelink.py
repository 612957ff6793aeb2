"""The site link: messages between two federated Samen sites over one WebSocket.

Every frame is `varUint(type) • body`. The dialing site speaks first:

    HELLO      D→A  varString(version) • varString(dialer site) • varString(acceptor site)
                    • varUint8Array(dialer nonce)
    CHALLENGE  A→D  varUint8Array(acceptor nonce) • varUint8Array(acceptor's ephemeral X25519 key)
                    • varUint8Array(signature by the acceptor)
                    • varUint(largest frame the acceptor accepts)
    AUTH       D→A  varUint8Array(dialer's ephemeral X25519 key) • varUint8Array(signature by the
                    dialer) • varUint(largest frame the dialer accepts)
    WELCOME    A→D  (empty; the first frame under the channel's MAC, see below)

HELLO's layout is the same in every version, so a site can always say which version it
refuses. Each side signs `handshake_payload(role, dialer, acceptor, dialer nonce, acceptor
nonce, its frame limit, acceptor key, dialer key)` with its Ed25519 site key (the acceptor
signs before it knows the dialer's key: empty there); fresh nonces on both sides make an
old handshake worthless. Both sides then derive one key per direction from the X25519
exchange of the two ephemeral keys (server/federation/channel_keys.py): a relay that
passed the handshake through cannot, so the link is bound to the two sites that signed.
From WELCOME on, every frame of each direction is sealed with its key and an implicit
sequence number (protocol/link_channel.py): nothing can be forged, altered, dropped or
replayed without the link failing. After WELCOME both sides may send:

    BATCH      varUint8Array(signed body) • varUint8Array(signature by the origin site)
               body = varString("samen-batch/2") • varString(origin site) • varUint(first seq)
                      • varUint(last seq) • varUint(n)
                      • n × (varString(document) • varString(author) • varUint8Array(update))
               `author` is who made the update at the origin site, a principal id
               ("name@site"), or "" for the site itself (merged content, server edits).
               The batch covers the origin's log rows first..last (rows of documents the
               receiver does not share are left out but still covered), so ACK(last) moves
               the origin's cursor past them.
    ACK        varUint(last seq)  "everything up to here is durable on my side"
    PRESENCE   varString(document) • varUint8Array(awareness update)
    WANT       varString(document) • varUint8Array(state vector)   "send me what I lack";
               answered by a BATCH with seqs 0..0 (not from the log: moves no cursor)
    REFUSED    varString(document) • varString(reason)   an entry or request was refused
    INVENTORY_DONE  varUint(through seq) • varUint(n) • n × varString(space)
               "you were sent every document of these spaces, as they were at my seq
               `through`" (in BATCHes with seqs 0..0, before this message): at its first
               link-up a peer gets whole the spaces newly shared with it, including what
               was compacted before
    INVENTORY_ACK   varUint(through seq) • varUint(n) • n × varString(space)
               the answer, once all of it is durable on the receiving side

    MEMBERSHIP varUint8Array(signed body) • varUint8Array(signature by the space's home site)
               a space's settings, sites and members as its home decides them; sent only
               by the home (see protocol/space_membership.py for the body)

    FRAGMENT   varUint(1 if more follow, else 0) • varUint8Array(piece)
               a message larger than the frame limit the other side gave at the handshake,
               cut into pieces sent back to back (nothing else in between); the last piece
               completes it. See `fragments` and `Reassembler`.

A batch with seqs 0..0 is applied and made durable before the next frame is read, so a
long inventory or a big answer holds one batch in memory on each side at a time.

Signing and verifying is the server's job (it holds the keys); this module only says
which bytes are signed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from .errors import ProtocolError, UnknownMessageType
from .lib0 import Decoder, Encoder, var_uint
from .link_channel import MAC_BYTES

__all__ = [
    "EPHEMERAL_KEY_BYTES",
    "LINK_VERSION",
    "MIN_FRAME_LIMIT",
    "NONCE_BYTES",
    "Ack",
    "Auth",
    "Batch",
    "BatchBody",
    "BatchEntry",
    "Challenge",
    "Hello",
    "InventoryAck",
    "InventoryDone",
    "Membership",
    "Presence",
    "Reassembler",
    "Refused",
    "SiteLinkMessage",
    "Want",
    "Welcome",
    "decode_batch_body",
    "decode_link_message",
    "encode_batch_body",
    "encode_link_message",
    "fragments",
    "handshake_payload",
]

LINK_VERSION = "samen-link/3"
BATCH_DOMAIN = "samen-batch/2"
NONCE_BYTES = 32
EPHEMERAL_KEY_BYTES = 32  # a raw X25519 public key

_HELLO, _CHALLENGE, _AUTH, _WELCOME, _BATCH, _ACK, _PRESENCE, _WANT, _REFUSED = range(1, 10)
_INVENTORY_DONE, _INVENTORY_ACK, _FRAGMENT, _MEMBERSHIP = 10, 11, 12, 13
MIN_FRAME_LIMIT = 64 * 1024  # a peer that accepts less is refused at the handshake
_FRAGMENT_OVERHEAD = 16  # type, flag and piece length, rounded up


@dataclass(frozen=True, slots=True)
class Hello:
    version: str
    dialer: str
    acceptor: str
    nonce: bytes


@dataclass(frozen=True, slots=True)
class Challenge:
    nonce: bytes
    key: bytes  # the acceptor's ephemeral X25519 public key
    signature: bytes
    max_frame: int


@dataclass(frozen=True, slots=True)
class Auth:
    key: bytes  # the dialer's ephemeral X25519 public key
    signature: bytes
    max_frame: int


@dataclass(frozen=True, slots=True)
class Welcome:
    pass


@dataclass(frozen=True, slots=True)
class Batch:
    body: bytes  # the exact signed bytes; decode with `decode_batch_body`
    signature: bytes


class BatchEntry(NamedTuple):
    document: str
    author: str  # a principal id ("name@site"), or "" for the origin site itself
    update: bytes


@dataclass(frozen=True, slots=True)
class BatchBody:
    origin: str
    first_seq: int
    last_seq: int
    entries: tuple[BatchEntry, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    last_seq: int


@dataclass(frozen=True, slots=True)
class Presence:
    document: str
    update: bytes


@dataclass(frozen=True, slots=True)
class Want:
    document: str
    state_vector: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    document: str
    reason: str


@dataclass(frozen=True, slots=True)
class InventoryDone:
    through_seq: int
    spaces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InventoryAck:
    through_seq: int
    spaces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Membership:
    body: bytes  # the exact signed bytes; decode with `space_membership.decode_membership_body`
    signature: bytes


SiteLinkMessage = (
    Hello
    | Challenge
    | Auth
    | Welcome
    | Batch
    | Ack
    | Presence
    | Want
    | Refused
    | InventoryDone
    | InventoryAck
    | Membership
)


def handshake_payload(
    role: str,
    dialer: str,
    acceptor: str,
    dialer_nonce: bytes,
    acceptor_nonce: bytes,
    max_frame: int,
    acceptor_key: bytes,
    dialer_key: bytes,
) -> bytes:
    """The bytes a side signs in the handshake; `role` is "dial" or "accept", so a signature
    made in one role can never be replayed in the other; `max_frame` is the signer's own.
    The ephemeral keys are signed with the nonces, so no one can put their own in; the
    acceptor signs first, with `dialer_key` empty (it has not seen it yet)."""
    return (
        Encoder()
        .write_var_string(LINK_VERSION)
        .write_var_string(role)
        .write_var_string(dialer)
        .write_var_string(acceptor)
        .write_var_uint8array(dialer_nonce)
        .write_var_uint8array(acceptor_nonce)
        .write_var_uint(max_frame)
        .write_var_uint8array(acceptor_key)
        .write_var_uint8array(dialer_key)
        .to_bytes()
    )


def fragments(message: bytes, max_frame: int) -> Iterator[bytes]:
    """`message` as frames of at most `max_frame` bytes: itself if it fits, else FRAGMENTs
    (made one at a time, so a big message is held once, not twice)."""
    if len(message) <= max_frame:
        yield message
        return
    if max_frame < MIN_FRAME_LIMIT - MAC_BYTES:  # the link leaves room for each frame's MAC
        raise ValueError(f"frame limit {max_frame} is below {MIN_FRAME_LIMIT - MAC_BYTES}")
    size = max_frame - _FRAGMENT_OVERHEAD
    view = memoryview(message)  # one copy per piece: straight into its frame
    for start in range(0, len(message), size):
        piece = view[start : start + size]
        more = 1 if start + size < len(message) else 0
        yield b"".join((var_uint(_FRAGMENT), var_uint(more), var_uint(len(piece)), piece))


class Reassembler:
    """Puts fragmented messages back together. `feed(frame)` returns the message the frame
    completes (the frame itself if it is not a FRAGMENT), or None while pieces are missing.
    Raises `ProtocolError` for a message above `limit` bytes or a frame that cuts into a
    fragmented message."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pieces: list[bytes] = []
        self._size = 0

    @property
    def assembling(self) -> int:
        """Bytes held of a message not yet complete."""
        return self._size

    def feed(self, frame: bytes) -> bytes | None:
        decoder = Decoder(frame)
        if decoder.read_var_uint() != _FRAGMENT:
            if self._pieces:
                raise ProtocolError("a message arrived inside a fragmented one")
            return frame
        more = decoder.read_var_uint()
        piece = decoder.read_var_uint8array()
        if not decoder.at_end() or more > 1:
            raise ProtocolError("malformed fragment")
        self._size += len(piece)
        if self._size > self.limit:
            raise ProtocolError(f"fragmented message larger than {self.limit} bytes")
        self._pieces.append(piece)
        if more:
            return None
        message, self._pieces, self._size = b"".join(self._pieces), [], 0
        return message


def encode_batch_body(body: BatchBody) -> bytes:
    encoder = Encoder().write_var_string(BATCH_DOMAIN).write_var_string(body.origin)
    encoder.write_var_uint(body.first_seq).write_var_uint(body.last_seq).write_var_uint(len(body.entries))
    for document, author, update in body.entries:
        encoder.write_var_string(document).write_var_string(author).write_var_uint8array(update)
    return encoder.to_bytes()


def decode_batch_body(data: bytes) -> BatchBody:
    decoder = Decoder(data)
    if decoder.read_var_string() != BATCH_DOMAIN:
        raise ProtocolError(f"not a {BATCH_DOMAIN} body")
    origin = decoder.read_var_string()
    first_seq = decoder.read_var_uint()
    last_seq = decoder.read_var_uint()
    count = decoder.read_var_uint()
    if count * 3 > decoder.remaining:  # three length bytes at least per entry
        raise ProtocolError("batch claims more entries than it holds")
    entries = []
    for _ in range(count):
        document, author = decoder.read_var_string(), decoder.read_var_string()
        entries.append(BatchEntry(document, author, decoder.read_var_uint8array()))
    if not decoder.at_end():
        raise ProtocolError("trailing bytes after the batch")
    if first_seq > last_seq:
        raise ProtocolError("batch range is reversed")
    return BatchBody(origin, first_seq, last_seq, tuple(entries))


def _read_strings(decoder: Decoder) -> tuple[str, ...]:
    count = decoder.read_var_uint()
    if count > decoder.remaining:  # every string takes at least its length byte
        raise ProtocolError("list claims more strings than it holds")
    return tuple(decoder.read_var_string() for _ in range(count))


def encode_link_message(message: SiteLinkMessage) -> bytes:
    encoder = Encoder()
    if isinstance(message, Hello):
        encoder.write_var_uint(_HELLO).write_var_string(message.version).write_var_string(message.dialer)
        encoder.write_var_string(message.acceptor).write_var_uint8array(message.nonce)
    elif isinstance(message, Challenge):
        encoder.write_var_uint(_CHALLENGE).write_var_uint8array(message.nonce)
        encoder.write_var_uint8array(message.key).write_var_uint8array(message.signature)
        encoder.write_var_uint(message.max_frame)
    elif isinstance(message, Auth):
        encoder.write_var_uint(_AUTH).write_var_uint8array(message.key)
        encoder.write_var_uint8array(message.signature).write_var_uint(message.max_frame)
    elif isinstance(message, Welcome):
        encoder.write_var_uint(_WELCOME)
    elif isinstance(message, Batch):
        encoder.write_var_uint(_BATCH).write_var_uint8array(message.body).write_var_uint8array(
            message.signature
        )
    elif isinstance(message, Ack):
        encoder.write_var_uint(_ACK).write_var_uint(message.last_seq)
    elif isinstance(message, Presence):
        encoder.write_var_uint(_PRESENCE).write_var_string(message.document).write_var_uint8array(
            message.update
        )
    elif isinstance(message, Want):
        encoder.write_var_uint(_WANT).write_var_string(message.document).write_var_uint8array(
            message.state_vector
        )
    elif isinstance(message, Refused):
        encoder.write_var_uint(_REFUSED).write_var_string(message.document).write_var_string(message.reason)
    elif isinstance(message, Membership):
        encoder.write_var_uint(_MEMBERSHIP).write_var_uint8array(message.body).write_var_uint8array(
            message.signature
        )
    else:
        kind = _INVENTORY_DONE if isinstance(message, InventoryDone) else _INVENTORY_ACK
        encoder.write_var_uint(kind).write_var_uint(message.through_seq).write_var_uint(len(message.spaces))
        for space in message.spaces:
            encoder.write_var_string(space)
    return encoder.to_bytes()


def decode_link_message(frame: bytes) -> SiteLinkMessage:
    decoder = Decoder(frame)
    kind = decoder.read_var_uint()
    message: SiteLinkMessage
    if kind == _HELLO:
        message = Hello(
            decoder.read_var_string(),
            decoder.read_var_string(),
            decoder.read_var_string(),
            decoder.read_var_uint8array(),
        )
    elif kind == _CHALLENGE:
        message = Challenge(
            decoder.read_var_uint8array(),
            decoder.read_var_uint8array(),
            decoder.read_var_uint8array(),
            decoder.read_var_uint(),
        )
    elif kind == _AUTH:
        message = Auth(decoder.read_var_uint8array(), decoder.read_var_uint8array(), decoder.read_var_uint())
    elif kind == _WELCOME:
        message = Welcome()
    elif kind == _BATCH:
        message = Batch(decoder.read_var_uint8array(), decoder.read_var_uint8array())
    elif kind == _ACK:
        message = Ack(decoder.read_var_uint())
    elif kind == _PRESENCE:
        message = Presence(decoder.read_var_string(), decoder.read_var_uint8array())
    elif kind == _WANT:
        message = Want(decoder.read_var_string(), decoder.read_var_uint8array())
    elif kind == _REFUSED:
        message = Refused(decoder.read_var_string(), decoder.read_var_string())
    elif kind == _MEMBERSHIP:
        message = Membership(decoder.read_var_uint8array(), decoder.read_var_uint8array())
    elif kind in (_INVENTORY_DONE, _INVENTORY_ACK):
        through, spaces = decoder.read_var_uint(), _read_strings(decoder)
        message = InventoryDone(through, spaces) if kind == _INVENTORY_DONE else InventoryAck(through, spaces)
    else:
        raise UnknownMessageType(f"unknown site link message type {kind}")
    if not decoder.at_end():
        raise ProtocolError("trailing bytes after the site link message")
    return message
