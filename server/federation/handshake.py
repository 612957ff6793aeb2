"""Mutual authentication of a site link, over any frame transport, and its sealed channel.

The dialer sends HELLO with a fresh nonce; the acceptor answers with its own nonce, an
ephemeral X25519 key and a signature over all of it; the dialer checks it and signs too
(with its own ephemeral key); the acceptor checks and welcomes. A peer that does not hold
the private key of the site it claims to be fails here. Both sides derive the channel's
keys from the two ephemeral keys (channel_keys.py), and from WELCOME on every frame is
sealed (protocol/link_channel.py): `Authenticated.transport` seals and opens them, so a
relay on the path can pass the handshake through but cannot forge, alter, drop or replay
anything after it without the link failing loudly (`LinkTampered`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Protocol

from protocol.errors import ProtocolError
from protocol.link_channel import ChannelIntegrityError, FrameOpener, FrameSealer
from protocol.sitelink import (
    LINK_VERSION,
    MIN_FRAME_LIMIT,
    NONCE_BYTES,
    Auth,
    Challenge,
    Hello,
    SiteLinkMessage,
    Welcome,
    decode_link_message,
    encode_link_message,
    handshake_payload,
)

from ..close_codes import CloseCode
from ..errors import SamenError
from .channel_keys import EphemeralKey, derive_channel_keys
from .identity import SiteIdentity
from .limits import shown
from .peers import Peer

__all__ = [
    "FEDERATION_PATH",
    "HANDSHAKE_TIMEOUT",
    "PRE_AUTH_MAX_FRAME",
    "Authenticated",
    "LinkClosed",
    "LinkRefused",
    "LinkTampered",
    "LinkTransport",
    "LinkViolation",
    "SealedTransport",
    "accept_handshake",
    "dial_handshake",
]

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
MAX_HANDSHAKE_MESSAGE = 4096  # HELLO, CHALLENGE, AUTH: ids, nonces, keys, signatures, a number
# The WebSocket frame limit on /federation until the handshake is done (server/listener.py):
# room for a handshake message that is too large, so it is refused with a reason, and no
# more; a stranger's 16 MiB frame is closed (1009) on its header. The bound on what
# strangers can make a node hold is MAX_HANDSHAKES x this.
PRE_AUTH_MAX_FRAME = 4 * MAX_HANDSHAKE_MESSAGE
FEDERATION_PATH = "/federation"


class LinkTransport(Protocol):
    """One WebSocket, whoever opened it."""

    async def send(self, data: bytes) -> None: ...

    async def recv(self) -> bytes:
        """The next binary frame; raises `LinkClosed` when the socket is gone."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


class LinkClosed(SamenError):
    """The other side closed the link (or the connection broke)."""


class LinkViolation(SamenError):
    """The peer broke the protocol or lied after the handshake; the link is closed (POLICY_VIOLATION)."""


class LinkTampered(LinkViolation):
    """A frame after the handshake failed its MAC check: something between the two sites
    forged, altered, dropped, replayed or reordered frames. The link is closed
    (LINK_INTEGRITY); nothing is acknowledged that did not come from the peer."""


class SealedTransport:
    """A `LinkTransport` whose every frame is sealed on the way out and checked on the way
    in. One writer at a time (the link's writer task): frames leave in the order sealed."""

    def __init__(self, transport: LinkTransport, sealer: FrameSealer, opener: FrameOpener) -> None:
        self._transport = transport
        self._sealer = sealer
        self._opener = opener

    async def send(self, data: bytes) -> None:
        await self._transport.send(self._sealer.seal(data))

    async def recv(self) -> bytes:
        sealed = await self._transport.recv()
        try:
            return self._opener.open(sealed)
        except ChannelIntegrityError as exc:
            raise LinkTampered(exc.reason) from exc

    async def close(self, code: int, reason: str) -> None:
        await self._transport.close(code, reason)


class LinkRefused(SamenError):
    """The handshake failed; `code` and `reason` go into the close frame."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def _receive(transport: LinkTransport) -> SiteLinkMessage:
    frame = await transport.recv()
    if len(frame) > MAX_HANDSHAKE_MESSAGE:
        # Before authentication the other side is a stranger: nothing it sends is kept,
        # decoded or logged beyond this size.
        raise LinkRefused(CloseCode.UNAUTHORIZED, f"handshake message of {len(frame)} bytes is too large")
    try:
        return decode_link_message(frame)
    except ProtocolError as exc:
        raise LinkRefused(CloseCode.UNAUTHORIZED, f"malformed handshake: {exc.reason}") from exc


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The outcome of a handshake: who the other side is, the largest frame it accepts
    (messages above it travel in fragments) and the sealed transport to speak to it on."""

    peer: Peer
    max_frame: int
    transport: SealedTransport


def _check_frame_limit(peer: Peer, max_frame: int) -> int:
    if max_frame < MIN_FRAME_LIMIT:
        raise LinkRefused(
            CloseCode.POLICY_VIOLATION,
            f"{peer.site_id} accepts frames of {max_frame} bytes, below {MIN_FRAME_LIMIT}",
        )
    return max_frame


def _ephemeral_exchange(ours: EphemeralKey, theirs: bytes, peer: Peer) -> bytes:
    try:
        return ours.exchange(theirs)
    except ValueError as exc:
        raise LinkRefused(CloseCode.UNAUTHORIZED, f"{peer.site_id} sent a bad ephemeral key: {exc}") from exc


async def dial_handshake(
    transport: LinkTransport, identity: SiteIdentity, peer: Peer, max_frame: int
) -> Authenticated:
    """Authenticate to `peer` (telling it this side accepts frames up to `max_frame`) and
    check that it is who it claims; raises `LinkRefused`."""
    async with asyncio.timeout(HANDSHAKE_TIMEOUT):
        nonce = secrets.token_bytes(NONCE_BYTES)
        await transport.send(encode_link_message(Hello(LINK_VERSION, identity.site_id, peer.site_id, nonce)))
        challenge = await _receive(transport)
        if not isinstance(challenge, Challenge) or len(challenge.nonce) != NONCE_BYTES:
            raise LinkRefused(CloseCode.UNAUTHORIZED, "expected a challenge")
        signed = handshake_payload(
            "accept", identity.site_id, peer.site_id, nonce, challenge.nonce, challenge.max_frame,
            challenge.key, b"",
        )  # fmt: skip
        if not peer.public_key.verify(challenge.signature, signed):
            raise LinkRefused(
                CloseCode.UNAUTHORIZED, f"{peer.site_id} did not prove its identity (wrong key)"
            )
        theirs = _check_frame_limit(peer, challenge.max_frame)
        ephemeral = EphemeralKey()
        secret = _ephemeral_exchange(ephemeral, challenge.key, peer)
        ours = handshake_payload(
            "dial", identity.site_id, peer.site_id, nonce, challenge.nonce, max_frame,
            challenge.key, ephemeral.public,
        )  # fmt: skip
        await transport.send(encode_link_message(Auth(ephemeral.public, identity.sign(ours), max_frame)))
        keys = derive_channel_keys(
            secret, dialer=identity.site_id, acceptor=peer.site_id, dialer_nonce=nonce,
            acceptor_nonce=challenge.nonce, dialer_key=ephemeral.public, acceptor_key=challenge.key,
        )  # fmt: skip
        sealed = SealedTransport(transport, *keys.dialer_ends())
        try:
            # WELCOME is the acceptor's first sealed frame: it proves both derived one key.
            welcome = decode_link_message(await sealed.recv())
        except LinkTampered as exc:
            raise LinkRefused(CloseCode.LINK_INTEGRITY, f"the welcome does not verify: {exc}") from exc
        except ProtocolError as exc:
            raise LinkRefused(CloseCode.UNAUTHORIZED, f"malformed welcome: {exc.reason}") from exc
        if not isinstance(welcome, Welcome):
            raise LinkRefused(CloseCode.UNAUTHORIZED, "expected a welcome")
        return Authenticated(peer, theirs, sealed)


async def accept_handshake(
    transport: LinkTransport, identity: SiteIdentity, peers: dict[str, Peer], max_frame: int
) -> Authenticated:
    """Authenticate a dialing site; returns it, or raises `LinkRefused`."""
    async with asyncio.timeout(HANDSHAKE_TIMEOUT):
        hello = await _receive(transport)
        if not isinstance(hello, Hello):
            raise LinkRefused(CloseCode.UNAUTHORIZED, "expected a hello")
        if hello.version != LINK_VERSION:
            # HELLO's layout never changes, so an older or newer peer is told why, plainly.
            raise LinkRefused(
                CloseCode.LINK_OUTDATED,
                f"site link version {shown(hello.version)} is not supported: this site speaks {LINK_VERSION}",
            )
        if hello.acceptor != identity.site_id:
            raise LinkRefused(
                CloseCode.FORBIDDEN, f"this is site {identity.site_id}, not {shown(hello.acceptor)}"
            )
        peer = peers.get(hello.dialer)
        if peer is None:
            raise LinkRefused(CloseCode.FORBIDDEN, f"unknown site {shown(hello.dialer)}")
        if len(hello.nonce) != NONCE_BYTES:
            raise LinkRefused(CloseCode.UNAUTHORIZED, "bad nonce")
        nonce = secrets.token_bytes(NONCE_BYTES)
        ephemeral = EphemeralKey()
        ours = handshake_payload(
            "accept", peer.site_id, identity.site_id, hello.nonce, nonce, max_frame, ephemeral.public, b""
        )
        challenge = Challenge(nonce, ephemeral.public, identity.sign(ours), max_frame)
        await transport.send(encode_link_message(challenge))
        auth = await _receive(transport)
        if not isinstance(auth, Auth):
            raise LinkRefused(CloseCode.UNAUTHORIZED, "expected an auth message")
        theirs = handshake_payload(
            "dial", peer.site_id, identity.site_id, hello.nonce, nonce, auth.max_frame,
            ephemeral.public, auth.key,
        )  # fmt: skip
        if not peer.public_key.verify(auth.signature, theirs):
            raise LinkRefused(
                CloseCode.UNAUTHORIZED, f"{peer.site_id} did not prove its identity (wrong key)"
            )
        limit = _check_frame_limit(peer, auth.max_frame)
        secret = _ephemeral_exchange(ephemeral, auth.key, peer)
        keys = derive_channel_keys(
            secret, dialer=peer.site_id, acceptor=identity.site_id, dialer_nonce=hello.nonce,
            acceptor_nonce=nonce, dialer_key=auth.key, acceptor_key=ephemeral.public,
        )  # fmt: skip
        sealed = SealedTransport(transport, *keys.acceptor_ends())
        await sealed.send(encode_link_message(Welcome()))
        return Authenticated(peer, limit, sealed)
