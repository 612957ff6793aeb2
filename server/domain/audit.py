"""The audit log: who did what, when, from which address and site. Append-only; admins read
it through `GET /api/v1/audit`. Other services record their events with `record`:

    await audit.record("member_removed", actor="ann@paris", target="eng/bob@paris",
                       address=caller_address, detail={"role": "editor"})

Actions recorded here: sign_in, sign_in_failed, sign_out, oidc_sign_in, oidc_sign_in_failed,
token_created, token_revoked, person_created, person_suspended, person_unsuspended,
site_role_changed. `actor` is a person id ("name@site"), "cli" for the command line, or ""
for someone unidentified (a failed sign-in: then `target` names the account tried).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..db import Database

__all__ = ["AuditEntry", "AuditLog"]


def _clean(text: str) -> str:
    # Recorded text may come from a hostile request (a name tried at sign-in); PostgreSQL
    # text cannot hold NUL, and the log should not carry it either.
    return text.replace("\x00", "\ufffd")


_ACTION = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: float
    site: str
    actor: str
    action: str
    target: str
    address: str
    detail: dict[str, Any]


class AuditLog:
    def __init__(self, db: Database, site: str, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.site = site
        self._clock = clock

    async def record(
        self,
        action: str,
        *,
        actor: str = "",
        target: str = "",
        address: str = "",
        site: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one entry (inside the caller's transaction, if one is open). `site`: where
        it happened, this site unless told (an event replicated from a space's home site)."""
        if not _ACTION.match(action):
            raise ValueError(f"not an audit action: {action!r}")
        await self.db.execute(
            "INSERT INTO audit_log (at, site, actor, action, target, address, detail) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            self._clock(), _clean(site or self.site), _clean(actor[:200]), action, _clean(target[:300]),
            _clean(address[:64]), json.dumps(dict(detail)) if detail else "",
        )  # fmt: skip

    async def query(
        self,
        *,
        actor: str = "",
        action: str = "",
        target: str = "",
        since: float | None = None,
        until: float | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first; `before` is the seq of the last entry of the previous page."""
        if "\x00" in actor + action + target:
            return []  # no entry holds a NUL (record replaces it)
        clauses = []
        args: list[Any] = []
        for column, value in (("actor", actor), ("action", action), ("target", target)):
            if value:
                args.append(value)
                clauses.append(f"{column} = ${len(args)}")
        for op, bound in ((">=", since), ("<", until)):
            if bound is not None:
                args.append(float(bound))
                clauses.append(f"at {op} ${len(args)}")
        if before is not None:
            args.append(before)
            clauses.append(f"seq < ${len(args)}")
        args.append(max(1, min(limit, MAX_PAGE)))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.db.fetch(
            f"SELECT seq, at, site, actor, action, target, address, detail FROM audit_log {where} "
            f"ORDER BY seq DESC LIMIT ${len(args)}",
            *args,
        )
        return [
            AuditEntry(
                int(r["seq"]),
                float(r["at"]),
                r["site"],
                r["actor"],
                r["action"],
                r["target"],
                r["address"],
                json.loads(r["detail"]) if r["detail"] else {},
            )
            for r in rows
        ]
