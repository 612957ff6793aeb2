"""Personal API tokens: `samen_<id>_<secret>`, shown once. The id (12 hex digits) is public:
lists, revocation, logs and `Principal.token_id` name a token by it. The table keeps only the
SHA-256 of the secret: the secret is 256 random bits, so a fast hash is enough (a slow one
is for passwords, which people choose), and a stolen table grants nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..db import Database, Row
from .errors import Invalid, NotFound

__all__ = ["SCOPES", "ApiTokens", "TokenInfo", "parse_duration"]

SCOPES = ("read", "write")
_TOKEN = re.compile(r"^samen_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_TOKEN_ID = re.compile(r"^[0-9a-f]{12}$")
_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_LABEL = 100
MAX_LIFETIME = 3 * 365 * 86400


def parse_duration(text: str) -> float:
    """ "30d", "12h", "2w", "90m", "45s" → seconds."""
    match = _DURATION.match(text.strip())
    if match is None or int(match[1]) == 0:
        raise Invalid("invalid_duration", "a duration is a number and a unit: 45s, 90m, 12h, 30d, 2w")
    seconds = int(match[1]) * _UNIT[match[2]]
    if seconds > MAX_LIFETIME:
        raise Invalid("invalid_duration", "a token lives at most three years")
    return float(seconds)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    person: str  # the owner's name
    label: str
    scope: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def _info(row: Row) -> TokenInfo:
    return TokenInfo(
        row["id"], row["person"], row["label"], row["scope"], float(row["created_at"]),
        row["expires_at"], row["revoked_at"], row["last_used_at"],
    )  # fmt: skip


_COLUMNS = "id, person, label, scope, created_at, expires_at, revoked_at, last_used_at"
# last_used_at is written at most this often per token: a script polling the API must not
# turn every request into a write.
_TOUCH_EVERY = 60.0


class ApiTokens:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    async def create(
        self, person: str, *, scope: str = "write", lifetime: float | None = 90 * 86400, label: str = ""
    ) -> tuple[TokenInfo, str]:
        """A new token of `person` (a name); returns it and the token text, shown once."""
        if scope not in SCOPES:
            raise Invalid("invalid_scope", "the scope is read or write")
        if len(label) > MAX_LABEL or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in label):
            message = f"a label has at most {MAX_LABEL} characters, no control characters"
            raise Invalid("invalid_label", message)
        if lifetime is not None and not 0 < lifetime <= MAX_LIFETIME:
            raise Invalid("invalid_duration", "a token lives from one second to three years")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        expires = now + lifetime if lifetime is not None else None
        await self.db.execute(
            "INSERT INTO api_tokens (id, person, label, secret_hash, scope, created_at, expires_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            token_id, person, label, _digest(secret), scope, now, expires,
        )  # fmt: skip
        return await self.require(token_id), f"samen_{token_id}_{secret}"

    async def get(self, token_id: str) -> TokenInfo | None:
        if not _TOKEN_ID.match(token_id):
            return None
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM api_tokens WHERE id = $1", token_id)
        return None if row is None else _info(row)

    async def require(self, token_id: str) -> TokenInfo:
        info = await self.get(token_id)
        if info is None:
            raise NotFound("token_not_found", "no such token")
        return info

    async def of(self, person: str) -> list[TokenInfo]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM api_tokens WHERE person = $1 ORDER BY created_at, id", person
        )
        return [_info(row) for row in rows]

    async def revoke(self, token_id: str) -> TokenInfo:
        """Revoke the token (again: no change); returns it."""
        info = await self.require(token_id)
        if info.revoked_at is None:
            await self.db.execute(
                "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                self._clock(), token_id,
            )  # fmt: skip
        return await self.require(token_id)

    async def verify(self, token: str) -> TokenInfo | None:
        """The token `token` is, if it is well-formed, known, unrevoked and unexpired."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS}, secret_hash FROM api_tokens WHERE id = $1", match[1]
        )
        if row is None or not hmac.compare_digest(row["secret_hash"], _digest(match[2])):
            return None
        info = _info(row)
        now = self._clock()
        if not info.usable(now):
            return None
        if info.last_used_at is None or now - info.last_used_at > _TOUCH_EVERY:
            await self.db.execute("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2", now, info.id)
        return info


def token_id_of(token: str) -> str | None:
    match = _TOKEN.match(token)
    return match[1] if match else None
