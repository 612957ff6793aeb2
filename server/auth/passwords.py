"""Password hashes: argon2id (argon2-cffi, its RFC 9106 low-memory parameters). Hashing is
CPU and memory work on purpose, so it runs in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["MAX_PASSWORD_BYTES", "MIN_PASSWORD_LENGTH", "Passwords"]

MIN_PASSWORD_LENGTH = 8
# Argon2 hashes any length, but the work grows with it: a bound keeps a caller from choosing it.
MAX_PASSWORD_BYTES = 1024


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()  # argon2id by default
        # Verified when the account does not exist or has no password, so that a wrong name
        # costs as long as a wrong password (no probing for account names by timing).
        self._dummy = self._hasher.hash("not a password of anyone")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, hashed: str, password: str) -> bool:
        if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
            return False
        return await asyncio.to_thread(self._verify, hashed or self._dummy, password, bool(hashed))

    def _verify(self, hashed: str, password: str, real: bool) -> bool:
        try:
            self._hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return real

    def needs_rehash(self, hashed: str) -> bool:
        return self._hasher.check_needs_rehash(hashed)
