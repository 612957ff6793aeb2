"""Mutual authentication of a site link, over any frame transport.

The dialer sends HELLO with a fresh nonce; the acceptor answers with its own nonce and a
signature over both; the dialer checks it and signs too; the acceptor checks and welcomes.
A peer that does not hold the private key of the site it claims to be fails here.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Protocol

from protocol.errors import ProtocolError
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

from ..errors import SamenError
from .identity import SiteIdentity
from .limits import shown
from .peers import Peer

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "Authenticated",
    "LinkClosed",
    "LinkRefused",
    "LinkTransport",
    "LinkViolation",
    "accept_handshake",
    "dial_handshake",
]

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
MAX_HANDSHAKE_MESSAGE = 4096  # HELLO, CHALLENGE, AUTH: ids, nonces, signatures, a number

# Close codes of the site link endpoint.
UNAUTHORIZED = 4401  # the handshake failed: wrong key, bad signature
FORBIDDEN = 4403  # unknown site, or the link was addressed to another site
CONFLICT = 4409  # another node of this site holds the link to that peer
OUTDATED = 4426  # the dialer speaks another version of the link protocol (HTTP's 426)
POLICY = 1008  # a peer that lies after the handshake (forged batch)


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
    """The peer broke the protocol or lied after the handshake; the link is closed (POLICY)."""


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
        raise LinkRefused(UNAUTHORIZED, f"handshake message of {len(frame)} bytes is too large")
    try:
        return decode_link_message(frame)
    except ProtocolError as exc:
        raise LinkRefused(UNAUTHORIZED, f"malformed handshake: {exc.reason}") from exc


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The outcome of a handshake: who the other side is, and the largest frame it accepts
    (messages above it travel in fragments)."""

    peer: Peer
    max_frame: int


def _check_frame_limit(peer: Peer, max_frame: int) -> int:
    if max_frame < MIN_FRAME_LIMIT:
        raise LinkRefused(
            POLICY, f"{peer.site_id} accepts frames of {max_frame} bytes, below {MIN_FRAME_LIMIT}"
        )
    return max_frame


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
            raise LinkRefused(UNAUTHORIZED, "expected a challenge")
        signed = handshake_payload(
            "accept", identity.site_id, peer.site_id, nonce, challenge.nonce, challenge.max_frame
        )
        if not peer.public_key.verify(challenge.signature, signed):
            raise LinkRefused(UNAUTHORIZED, f"{peer.site_id} did not prove its identity (wrong key)")
        theirs = _check_frame_limit(peer, challenge.max_frame)
        ours = handshake_payload("dial", identity.site_id, peer.site_id, nonce, challenge.nonce, max_frame)
        await transport.send(encode_link_message(Auth(identity.sign(ours), max_frame)))
        welcome = await _receive(transport)
        if not isinstance(welcome, Welcome):
            raise LinkRefused(UNAUTHORIZED, "expected a welcome")
        return Authenticated(peer, theirs)


async def accept_handshake(
    transport: LinkTransport, identity: SiteIdentity, peers: dict[str, Peer], max_frame: int
) -> Authenticated:
    """Authenticate a dialing site; returns it, or raises `LinkRefused`."""
    async with asyncio.timeout(HANDSHAKE_TIMEOUT):
        hello = await _receive(transport)
        if not isinstance(hello, Hello):
            raise LinkRefused(UNAUTHORIZED, "expected a hello")
        if hello.version != LINK_VERSION:
            # HELLO's layout never changes, so an older or newer peer is told why, plainly.
            raise LinkRefused(
                OUTDATED,
                f"site link version {shown(hello.version)} is not supported: this site speaks {LINK_VERSION}",
            )
        if hello.acceptor != identity.site_id:
            raise LinkRefused(FORBIDDEN, f"this is site {identity.site_id}, not {shown(hello.acceptor)}")
        peer = peers.get(hello.dialer)
        if peer is None:
            raise LinkRefused(FORBIDDEN, f"unknown site {shown(hello.dialer)}")
        if len(hello.nonce) != NONCE_BYTES:
            raise LinkRefused(UNAUTHORIZED, "bad nonce")
        nonce = secrets.token_bytes(NONCE_BYTES)
        ours = handshake_payload("accept", peer.site_id, identity.site_id, hello.nonce, nonce, max_frame)
        await transport.send(encode_link_message(Challenge(nonce, identity.sign(ours), max_frame)))
        auth = await _receive(transport)
        if not isinstance(auth, Auth):
            raise LinkRefused(UNAUTHORIZED, "expected an auth message")
        theirs = handshake_payload("dial", peer.site_id, identity.site_id, hello.nonce, nonce, auth.max_frame)
        if not peer.public_key.verify(auth.signature, theirs):
            raise LinkRefused(UNAUTHORIZED, f"{peer.site_id} did not prove its identity (wrong key)")
        limit = _check_frame_limit(peer, auth.max_frame)
        await transport.send(encode_link_message(Welcome()))
        return Authenticated(peer, limit)
