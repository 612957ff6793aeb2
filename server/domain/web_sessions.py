"""Browser sessions, kept on the server so they can be ended: the cookie holds 256 random
bits, the table their SHA-256 (a stolen table opens no session). A session ends when signed
out, after `idle` seconds without use, `absolute` seconds after sign-in, or when its person
is suspended."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..db import Database

__all__ = ["WebSession", "WebSessions", "session_digest"]

_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
# last_seen_at is written at most this often: a busy browser must not write on every request.
_TOUCH_EVERY = 60.0


def session_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class WebSession:
    digest: str
    person: str  # the person's name
    created_at: float
    expires_at: float


class WebSessions:
    def __init__(
        self, db: Database, *, idle: float, absolute: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.idle = idle
        self.absolute = absolute
        self._clock = clock

    async def create(self, person: str, address: str = "") -> tuple[WebSession, str]:
        """A new session of `person`; returns it and the cookie value."""
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        session = WebSession(session_digest(secret), person, now, now + self.absolute)
        await self.db.execute(
            "INSERT INTO web_sessions (secret_hash, person, address, created_at, last_seen_at, expires_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            session.digest, person, address[:64], now, now, session.expires_at,
        )  # fmt: skip
        return session, secret

    async def lookup(self, secret: str) -> WebSession | None:
        """The live session the cookie value opens, if any (an expired one is deleted)."""
        if not _SECRET.match(secret):
            return None
        digest = session_digest(secret)
        row = await self.db.fetchrow(
            "SELECT person, created_at, last_seen_at, expires_at FROM web_sessions WHERE secret_hash = $1",
            digest,
        )
        if row is None:
            return None
        now = self._clock()
        if now >= row["expires_at"] or now - row["last_seen_at"] >= self.idle:
            await self.db.execute("DELETE FROM web_sessions WHERE secret_hash = $1", digest)
            return None
        if now - row["last_seen_at"] > _TOUCH_EVERY:
            await self.db.execute(
                "UPDATE web_sessions SET last_seen_at = $1 WHERE secret_hash = $2", now, digest
            )
        return WebSession(digest, row["person"], float(row["created_at"]), float(row["expires_at"]))

    async def end(self, secret: str) -> str | None:
        """Sign out: delete the session; returns its person's name, if it existed."""
        if not _SECRET.match(secret):
            return None
        digest = session_digest(secret)
        person = await self.db.fetchval("SELECT person FROM web_sessions WHERE secret_hash = $1", digest)
        await self.db.execute("DELETE FROM web_sessions WHERE secret_hash = $1", digest)
        return None if person is None else str(person)

    async def end_all_of(self, person: str) -> int:
        return await self.db.execute("DELETE FROM web_sessions WHERE person = $1", person)

    async def prune(self) -> int:
        """Delete expired sessions (housekeeping)."""
        now = self._clock()
        return await self.db.execute(
            "DELETE FROM web_sessions WHERE expires_at <= $1 OR last_seen_at <= $2", now, now - self.idle
        )
