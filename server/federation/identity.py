"""A site's identity: its id and Ed25519 key pair.

The private key lives in a PKCS#8 PEM file readable only by its owner; the public key is
shared with peers as base64 of its 32 raw bytes (short enough for a TOML line).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import ConfigError

__all__ = ["PublicKey", "SiteIdentity", "check_site_id", "create_identity", "load_identity"]

_SITE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def check_site_id(site_id: str) -> str:
    if not _SITE_ID.match(site_id):
        raise ConfigError(
            f"site id {site_id!r}: use 1-63 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return site_id


@dataclass(frozen=True, slots=True)
class PublicKey:
    key: Ed25519PublicKey

    @classmethod
    def from_text(cls, text: str) -> PublicKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
            return cls(Ed25519PublicKey.from_public_bytes(raw))
        except (binascii.Error, ValueError) as exc:
            raise ConfigError("a public key must be base64 of 32 raw Ed25519 bytes") from exc

    def to_text(self) -> str:
        raw = self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self.key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class SiteIdentity:
    site_id: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(self.private_key.public_key())

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def create_identity(site_id: str, key_file: Path) -> SiteIdentity:
    """Generate a key pair and write the private key to `key_file` (mode 0600). Refuses
    to overwrite an existing key: losing it means re-keying with every peer."""
    check_site_id(site_id)
    if key_file.exists():
        raise ConfigError(f"{key_file} exists; refusing to overwrite a site key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    return SiteIdentity(site_id, key)


def load_identity(site_id: str, key_file: Path) -> SiteIdentity:
    check_site_id(site_id)
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"cannot read the site key {key_file}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{key_file} is not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{key_file} is not an Ed25519 key")
    return SiteIdentity(site_id, key)
