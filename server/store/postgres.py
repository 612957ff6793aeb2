"""The PostgreSQL store for multi-node sites: the contract of ports.py (the same as the
embedded SQLite store), safe with several nodes appending to and compacting one database.

Tables (migrations/0001_initial.sql): `updates`, the log, numbered by a sequence; and
`snapshots`, one per compacted document, with `through_seq`, the highest seq merged into it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ..errors import StoreError
from .migrate import COMPACTION_LOCK_CLASS, Connection, driver_errors, migrate
from .ports import DocumentLog

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

_APPEND = "INSERT INTO updates (doc, data) SELECT * FROM unnest($1::text[], $2::bytea[])"
_READ_SNAPSHOT = "SELECT data, through_seq FROM snapshots WHERE doc = $1"
_READ_LOG = "SELECT seq, data FROM updates WHERE doc = $1 ORDER BY seq"
# GREATEST: rows committed late with a low seq can outlive a compaction (see `_compact_once`),
# so the next one may merge rows all below the current through_seq.
_WRITE_SNAPSHOT = """
INSERT INTO snapshots (doc, data, through_seq) VALUES ($1, $2, $3)
ON CONFLICT (doc) DO UPDATE SET
    data = excluded.data,
    through_seq = GREATEST(snapshots.through_seq, excluded.through_seq),
    at = now()
"""
_DELETE_MERGED = "DELETE FROM updates WHERE doc = $1 AND seq <= $2"
_LOG_LENGTH = "SELECT count(*) FROM updates WHERE doc = $1"
_LOCK = "SELECT pg_advisory_lock($1, hashtext($2))"
_UNLOCK = "SELECT pg_advisory_unlock($1, hashtext($2))"

# Another transaction changed what ours read (only possible from writers that skip the
# advisory lock). Retrying the whole read-merge-write is safe: the failed attempt left nothing.
_RETRYABLE = (asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError)
_COMPACT_ATTEMPTS = 5


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._min_connections = min_connections
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Connect and apply pending migrations. Raises `StoreUnavailable` if PostgreSQL cannot
        be reached (the caller decides whether to retry)."""
        if self._pool is not None:
            raise StoreError("the PostgreSQL store is already open")
        where = redacted(self._dsn)
        with driver_errors(f"connecting to {where}"):
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_connections,
                max_size=self._max_connections,
                timeout=self._connect_timeout,
                server_settings={"application_name": "samen"},
            )
        try:
            with driver_errors(f"migrating {where}"):
                async with pool.acquire() as conn:
                    applied = await migrate(conn)
        except BaseException:
            pool.terminate()
            raise
        if applied:
            log.info("PostgreSQL store %s: applied schema migrations %s", where, applied)
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with driver_errors("closing the connection pool"):
            try:
                await pool.close()
            except BaseException:
                pool.terminate()
                raise

    async def ping(self) -> None:
        with driver_errors("pinging"):
            await self._ready().fetchval("SELECT 1")

    async def append(self, rows: Sequence[tuple[str, bytes]]) -> None:
        if not rows:
            return
        # One statement is one transaction and one round trip; it returns after the commit,
        # which (with the default synchronous_commit) is durable.
        with driver_errors(f"appending {len(rows)} updates"):
            await self._ready().execute(_APPEND, [doc for doc, _ in rows], [data for _, data in rows])

    async def load(self, name: str) -> DocumentLog:
        # REPEATABLE READ: the snapshot and the rows come from one view of the database, so a
        # compaction committing in between cannot make rows vanish from both.
        with driver_errors(f"loading {name!r}"):
            async with (
                self._ready().acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                return await _read(conn, name)

    async def log_length(self, name: str) -> int:
        with driver_errors(f"counting the log of {name!r}"):
            return int(await self._ready().fetchval(_LOG_LENGTH, name))

    async def compact(self, name: str, merge: Callable[[list[bytes]], bytes]) -> int:
        merge_error: Exception
        try:
            with driver_errors(f"compacting {name!r}"):
                async with self._ready().acquire() as conn, _compaction_lock(conn, name):
                    return await _compact_retrying(conn, name, merge)
        except _MergeFailed as failed:
            merge_error = failed.error
        # Raised outside the handler: the caller gets merge's exception as it was raised.
        raise merge_error

    def _ready(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        return self._pool


class _MergeFailed(Exception):
    """Carries an exception raised by `merge` past `driver_errors` untranslated (merge could
    raise an OSError, which would otherwise read as "PostgreSQL unavailable")."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


async def _read(conn: Connection, name: str) -> DocumentLog:
    snapshot = await conn.fetchrow(_READ_SNAPSHOT, name)
    rows = await conn.fetch(_READ_LOG, name)
    through_seq = int(snapshot["through_seq"]) if snapshot is not None else 0
    return DocumentLog(
        name,
        bytes(snapshot["data"]) if snapshot is not None else None,
        [bytes(row["data"]) for row in rows],
        int(rows[-1]["seq"]) if rows else through_seq,
    )


@asynccontextmanager
async def _compaction_lock(conn: Connection, name: str) -> AsyncIterator[None]:
    """Compactions of one document take turns across every node. The lock is session-level
    so it spans the transaction and its retries; a hash collision only makes two documents
    take turns. Should the unlock not run, the pool's reset on release unlocks all."""
    await conn.execute(_LOCK, COMPACTION_LOCK_CLASS, name)
    try:
        yield
    finally:
        await _unlock(conn, name)


async def _unlock(conn: Connection, name: str) -> None:
    try:
        await conn.execute(_UNLOCK, COMPACTION_LOCK_CLASS, name)
    except Exception as exc:
        # Ending the session releases its locks, and raising here would hide whatever ended
        # the compaction (its result, or the exception, or the cancellation, in flight).
        log.debug("unlocking the compaction of %r failed (%s); dropping the connection", name, exc)
        # A connection asyncpg saw closing is already back in the pool: its session is gone.
        with suppress(asyncpg.InterfaceError):
            conn.terminate()


async def _compact_retrying(conn: Connection, name: str, merge: Callable[[list[bytes]], bytes]) -> int:
    attempt = 1
    while True:
        try:
            return await _compact_once(conn, name, merge)
        except _RETRYABLE as exc:
            if attempt >= _COMPACT_ATTEMPTS:
                raise
            log.info("compaction of %r hit %s; retrying", name, type(exc).__name__)
            attempt += 1


async def _compact_once(conn: Connection, name: str, merge: Callable[[list[bytes]], bytes]) -> int:
    # Why deleting `seq <= last` is safe while other nodes append: seqs are handed out when a
    # row is inserted, not when its transaction commits, so a row with a seq below `last` can
    # commit after our read. In REPEATABLE READ the DELETE sees only the rows of our read's
    # snapshot, so it removes exactly the rows merged and keeps that late row; and as `load`
    # reads every remaining row (not only seq > through_seq), the late row is not lost either.
    async with conn.transaction(isolation="repeatable_read"):
        doc_log = await _read(conn, name)
        if not doc_log.updates:
            return 0
        try:
            merged = await asyncio.to_thread(merge, doc_log.all_updates())
        except Exception as exc:
            raise _MergeFailed(exc) from None  # rolls back: the log stays as it is
        await conn.execute(_WRITE_SNAPSHOT, name, merged, doc_log.last_seq)
        status = await conn.execute(_DELETE_MERGED, name, doc_log.last_seq)
    return int(status.rpartition(" ")[2])  # "DELETE <count>"


def redacted(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is not None:
            userinfo, _, hostinfo = parts.netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            dsn = urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))
    return re.sub(r"(password\s*=\s*)[^&\s]*", r"\1***", dsn, flags=re.IGNORECASE)
