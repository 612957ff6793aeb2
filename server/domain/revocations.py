"""The revocation feed: changes of access that running nodes must apply to their live
sessions within a second, wherever the change was made.

Whoever changes access (a node's REST handler, the CLI acting on the store directly)
commits the change, then calls `Revocations.record(Revocation(...))`: a row in the
`revocations` table, and on a node also `registry.revoke` at once (this node, and the site's
other nodes over the backplane: the fast path). Every node runs `Revocations.run`, which
reads the rows after the last one it saw every `POLL_SECONDS` and hands them to the
registry, except the rows it wrote itself (already applied). So the CLI reaches running
nodes through the table, and a backplane message Redis dropped is made good by it; applying
a revocation twice only checks the sessions twice (the registry reads the current state).

    Revocation(principal="bob@paris")                 # suspended, signed out, any change of a person
    Revocation(principal="bob@paris", token=TOKEN_ID) # that token revoked
    Revocation(prefix="eng/")                         # e.g. a space archived (every session in it)
    Revocation(principal="bob@paris", prefix="eng/")  # bob's role in eng lowered or removed
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from protocol.backplane import Revocation

from ..db import Database
from ..errors import StoreError

__all__ = ["POLL_SECONDS", "Revocation", "Revocations"]

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
KEEP_SECONDS = 3600.0  # rows older than this are deleted: a node that starts reads only new rows
_PRUNE_EVERY = 240  # polls


class Revocations:
    def __init__(
        self,
        db: Database,
        node: str = "",
        on_record: Callable[[Revocation], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`node`: this node's id ("" for the CLI); `on_record`: applies a revocation on this
        node at once (`SessionRegistry.revoke`)."""
        self.db = db
        self.node = node
        self.on_record = on_record
        self._clock = clock

    async def record(self, revocation: Revocation) -> None:
        """Make every node check the matching sessions again; call after the change committed."""
        await self.db.execute(
            "INSERT INTO revocations (principal, token, prefix, node, at) VALUES ($1, $2, $3, $4, $5)",
            revocation.principal, revocation.token, revocation.prefix, self.node, self._clock(),
        )  # fmt: skip
        if self.on_record is not None:
            self.on_record(revocation)

    async def last_seq(self) -> int:
        return int(await self.db.fetchval("SELECT coalesce(max(seq), 0) FROM revocations"))

    async def after(self, seq: int, limit: int = 1000) -> list[tuple[int, str, Revocation]]:
        rows = await self.db.fetch(
            "SELECT seq, principal, token, prefix, node FROM revocations "
            "WHERE seq > $1 ORDER BY seq LIMIT $2",
            seq, limit,
        )  # fmt: skip
        return [(int(r["seq"]), r["node"], Revocation(r["principal"], r["token"], r["prefix"])) for r in rows]

    async def run(self, apply: Callable[[Revocation], Any], after: int | None = None) -> None:
        """Hand every row other writers record from now on (or after seq `after`) to `apply`;
        owned by the lifespan."""
        seen = after if after is not None else await self._retrying(self.last_seq)
        polls = 0
        while True:
            await asyncio.sleep(POLL_SECONDS)
            rows = await self._retrying(functools.partial(self.after, seen))
            for seq, node, revocation in rows:
                seen = seq
                if not node or node != self.node:
                    apply(revocation)
            polls += 1
            if polls % _PRUNE_EVERY == 0:
                await self._retrying(self.prune)

    async def prune(self) -> int:
        return await self.db.execute("DELETE FROM revocations WHERE at < $1", self._clock() - KEEP_SECONDS)

    async def _retrying(self, fn: Callable[[], Any]) -> Any:
        # The database may be away for a while (a PostgreSQL restart): keep trying, the rows wait.
        delay = POLL_SECONDS
        while True:
            try:
                return await fn()
            except StoreError as exc:
                log.warning("revocation feed: %s; retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
