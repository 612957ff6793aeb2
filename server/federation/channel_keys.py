"""The keys of one site link, from the handshake's ephemeral X25519 exchange.

Each side makes a fresh X25519 key pair per connection and signs its public half inside
the handshake (protocol/sitelink.py `handshake_payload`). Both compute the same shared
secret; HKDF-SHA256, salted with the two nonces and bound to the two site ids and both
public keys, turns it into one MAC key per direction (so a frame cannot be reflected back
to its sender). A relay that passed the handshake through knows neither private half, so
it can compute neither key: the link is bound to the two sites that signed it.

Pure computation (the `cryptography` package): no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.lib0 import Encoder
from protocol.link_channel import KEY_BYTES, FrameOpener, FrameSealer
from protocol.sitelink import EPHEMERAL_KEY_BYTES, LINK_VERSION

__all__ = ["ChannelKeys", "EphemeralKey", "derive_channel_keys"]

DIAL_TO_ACCEPT = "dialer->acceptor"
ACCEPT_TO_DIAL = "acceptor->dialer"


class EphemeralKey:
    """One side's X25519 key pair for one connection (never stored, never reused)."""

    __slots__ = ("_private", "public")

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public = self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def exchange(self, their_public: bytes) -> bytes:
        """The shared secret; raises `ValueError` for a key that is not 32 bytes or is a
        low-order point (an all-zero secret: a peer trying to force a known key)."""
        if len(their_public) != EPHEMERAL_KEY_BYTES:
            raise ValueError(f"an ephemeral key is {EPHEMERAL_KEY_BYTES} bytes, not {len(their_public)}")
        secret = self._private.exchange(X25519PublicKey.from_public_bytes(their_public))
        if not any(secret):
            raise ValueError("the ephemeral key is a low-order point")
        return secret


@dataclass(frozen=True, slots=True)
class ChannelKeys:
    dial_to_accept: bytes
    accept_to_dial: bytes

    def dialer_ends(self) -> tuple[FrameSealer, FrameOpener]:
        return FrameSealer(self.dial_to_accept), FrameOpener(self.accept_to_dial)

    def acceptor_ends(self) -> tuple[FrameSealer, FrameOpener]:
        return FrameSealer(self.accept_to_dial), FrameOpener(self.dial_to_accept)


def _key(secret: bytes, salt: bytes, direction: str, context: bytes) -> bytes:
    info = Encoder().write_var_string(direction).to_bytes() + context
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(secret)


def derive_channel_keys(
    secret: bytes,
    *,
    dialer: str,
    acceptor: str,
    dialer_nonce: bytes,
    acceptor_nonce: bytes,
    dialer_key: bytes,
    acceptor_key: bytes,
) -> ChannelKeys:
    """Both directions' MAC keys from the X25519 `secret` and what both sides signed."""
    context = (
        Encoder()
        .write_var_string(LINK_VERSION)
        .write_var_string(dialer)
        .write_var_string(acceptor)
        .write_var_uint8array(dialer_key)
        .write_var_uint8array(acceptor_key)
        .to_bytes()
    )
    salt = dialer_nonce + acceptor_nonce
    return ChannelKeys(
        _key(secret, salt, DIAL_TO_ACCEPT, context), _key(secret, salt, ACCEPT_TO_DIAL, context)
    )
