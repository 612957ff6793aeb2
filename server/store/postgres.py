"""The PostgreSQL store for multi-node sites: the contract of ports.py (the same as the
embedded SQLite store), safe with several nodes appending to and compacting one database.

Tables (migrations/): `updates`, the log, numbered by a sequence, each row with its `origin`
site and its `author`; `snapshots`, one per compacted document, with `through_seq`, the
highest seq merged into it; `federation_cursors`, how far each peer site acknowledged the
log; and `federation_spaces`, the spaces each peer was sent whole.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager, suppress
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ..errors import StoreError
from .migrate import migrate
from .pgdriver import COMPACTION_LOCK_CLASS, LOG_ORDER_LOCK_CLASS, Connection, driver_errors
from .ports import AppendRow, CatchupPlan, DocumentLog, KeptRow, LogRow, catchup_rows

__all__ = ["PostgresStore"]

# Above every seq (both backends number the log with signed 64-bit integers).
_EVERY_SEQ = 2**63 - 1

log = logging.getLogger(__name__)

_LOCK_LOG_ORDER = "SELECT pg_advisory_xact_lock($1, 0)"
# One statement: one implicit transaction and one round trip, committed (durably, with the
# default synchronous_commit) when it returns. The log-order lock (see `append`) is the
# uncorrelated subquery: PostgreSQL runs it once as an InitPlan, the one-time filter of the
# Result node that computes each row's nextval(), so the lock is held before the first seq
# is taken, and (being transaction-level) until the commit has made the rows visible.
_APPEND = """
INSERT INTO updates (doc, data, origin, author)
SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[])
WHERE (SELECT pg_advisory_xact_lock($5, 0)) IS NOT NULL
"""
_READ_LOG_AFTER = "SELECT seq, doc, data, origin, author FROM updates WHERE seq > $1 ORDER BY seq LIMIT $2"
# The sequence, not max(seq): compaction deletes rows, so the table's maximum can go down.
# `is_called` is false until the first nextval (last_value is then the start value, 1).
_LAST_SEQ = """
SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM updates_seq_seq
"""
_GET_CURSOR = "SELECT acked_seq FROM federation_cursors WHERE peer = $1"
# GREATEST: acknowledgements can arrive out of order (retries, two links); a cursor that went
# back would make compaction keep rows for nothing, and resend them. `at` moves on every call.
_SET_CURSOR = """
INSERT INTO federation_cursors (peer, acked_seq) VALUES ($1, $2)
ON CONFLICT (peer) DO UPDATE SET
    acked_seq = GREATEST(federation_cursors.acked_seq, excluded.acked_seq),
    at = now()
"""
# Bytewise order ("C"), the order of SQLite and of the memory store: pages follow each other
# whatever the database's collation. A one-off scan per peer and space (see federation).
_LIST_DOCUMENTS = """
SELECT doc FROM (
    SELECT doc FROM snapshots WHERE left(doc, length($1)) = $1 AND doc COLLATE "C" > $2
    UNION
    SELECT doc FROM updates WHERE left(doc, length($1)) = $1 AND doc COLLATE "C" > $2
) AS documents ORDER BY doc COLLATE "C" LIMIT $3
"""
_SYNCED_SPACES = "SELECT space FROM federation_spaces WHERE peer = $1"
_FORGET_SPACES = "DELETE FROM federation_spaces WHERE peer = $1"
_ADD_SPACES = "INSERT INTO federation_spaces (peer, space) SELECT $1, unnest($2::text[])"
_READ_SNAPSHOT = "SELECT data, through_seq FROM snapshots WHERE doc = $1"
_READ_LOG = "SELECT seq, data FROM updates WHERE doc = $1 ORDER BY seq"
_QUARANTINE = tuple(
    f"WITH moved AS (DELETE FROM {table} WHERE doc = $1 AND data = $2 RETURNING doc, data) "
    "INSERT INTO quarantined_updates (doc, data, reason) SELECT doc, data, $3 FROM moved"
    for table in ("updates", "snapshots")
)
# GREATEST: a row committed late with a lower seq can be merged after a higher one; the
# through_seq (the highest seq merged) never goes back.
_WRITE_SNAPSHOT = """
INSERT INTO snapshots (doc, data, through_seq) VALUES ($1, $2, $3)
ON CONFLICT (doc) DO UPDATE SET
    data = excluded.data,
    through_seq = GREATEST(snapshots.through_seq, excluded.through_seq),
    at = now()
"""
_LOG_LENGTH = "SELECT count(*) FROM updates WHERE doc = $1"
_ROWS_AFTER = "SELECT count(*) FROM updates WHERE seq > $1"
# Rows in the snapshot already (kept for a peer) are not merged again.
_READ_FRESH = "SELECT seq, data FROM updates WHERE doc = $1 AND in_snapshot = 0 ORDER BY seq"
_MARK_IN_SNAPSHOT = "UPDATE updates SET in_snapshot = 1 WHERE doc = $1 AND seq = ANY($2::bigint[])"
_DELETE_MERGED = "DELETE FROM updates WHERE doc = $1 AND in_snapshot = 1 AND seq <= $2"
_READ_KEPT = """
SELECT seq, origin, author, catchup_level FROM updates
WHERE doc = $1 AND seq > $2 AND in_snapshot = 1 ORDER BY seq
"""
# After a snapshot was quarantined, the rows kept in the log are all that is left of theirs.
_NOT_IN_SNAPSHOT = """
UPDATE updates SET in_snapshot = 0
WHERE doc = $1 AND in_snapshot = 1 AND NOT EXISTS (SELECT 1 FROM snapshots WHERE doc = $1)
"""
_READ_SEQS = "SELECT seq, data FROM updates WHERE doc = $1 AND seq = ANY($2::bigint[])"
# Catch-up rows take their seqs under the log-order lock, like any append (see `_APPEND`).
_APPEND_CATCHUP = """
INSERT INTO updates (doc, data, origin, author, catchup_level, in_snapshot)
SELECT *, 1 FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::integer[])
WHERE (SELECT pg_advisory_xact_lock($6, 0)) IS NOT NULL
"""
_DELETE_SEQS = "DELETE FROM updates WHERE doc = $1 AND seq = ANY($2::bigint[])"
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

    async def append(self, rows: Sequence[AppendRow]) -> None:
        if not rows:
            return
        columns = (
            [row.doc for row in rows],
            [row.update for row in rows],
            [row.origin for row in rows],
            [row.author for row in rows],
        )
        # Why the log-order lock: a seq is handed out when a row is inserted, not when its
        # transaction commits, so with several connections (and nodes) a transaction holding
        # seq 10 could commit after one holding seq 11. A reader tailing the log at "seq > 10"
        # would then never see row 10, and federation would never send it. Taken before the
        # INSERT and held until the commit, the lock makes appends take their seqs and commit
        # one after another: the log becomes visible in seq order. It costs concurrency
        # between appends only (reads, loads and compactions never take it); taking it inside
        # the INSERT, not as a statement of its own, keeps round trips out of the time it is
        # held. Measured with two nodes each appending one batch at a time (as the
        # group-commit writer does): ~7% fewer appends/s than without the lock, where
        # BEGIN; lock; INSERT; COMMIT cost ~30%.
        with driver_errors(f"appending {len(rows)} updates"):
            status = await self._ready().execute(_APPEND, *columns, LOG_ORDER_LOCK_CLASS)
        # "INSERT 0 <rows>". Fewer would mean the lock's filter dropped rows: never report
        # an update durable that was not written.
        if int(status.rpartition(" ")[2]) != len(rows):
            raise StoreError(f"appending {len(rows)} updates wrote {status!r}")

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

    async def quarantine(self, name: str, update: bytes, reason: str) -> int:
        with driver_errors(f"quarantining an update of {name!r}"):
            async with self._ready().acquire() as conn, conn.transaction():
                moved = 0
                for statement in _QUARANTINE:
                    status = await conn.execute(statement, name, update, reason)
                    moved += int(status.rpartition(" ")[2])
                await conn.execute(_NOT_IN_SNAPSHOT, name)
                return moved

    async def read_log_after(self, seq: int, limit: int) -> list[LogRow]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        with driver_errors(f"reading the log after {seq}"):
            rows = await self._ready().fetch(_READ_LOG_AFTER, seq, limit)
        return [LogRow(int(r["seq"]), r["doc"], bytes(r["data"]), r["origin"], r["author"]) for r in rows]

    async def last_seq(self) -> int:
        # Under the log-order lock no append is between taking its seq and committing, so
        # every row up to the returned seq is visible (or rolled back): a reader starting
        # after it misses nothing. Without the lock the value could belong to a row that
        # commits later.
        with driver_errors("reading the last seq"):
            async with self._ready().acquire() as conn, conn.transaction():
                await conn.execute(_LOCK_LOG_ORDER, LOG_ORDER_LOCK_CLASS)
                return int(await conn.fetchval(_LAST_SEQ))

    async def get_cursor(self, peer: str) -> int:
        with driver_errors(f"reading the cursor of {peer!r}"):
            acked = await self._ready().fetchval(_GET_CURSOR, peer)
        return int(acked) if acked is not None else 0

    async def set_cursor(self, peer: str, seq: int) -> None:
        with driver_errors(f"recording the cursor of {peer!r}"):
            await self._ready().execute(_SET_CURSOR, peer, seq)

    async def list_documents(self, prefix: str, after: str, limit: int) -> list[str]:
        with driver_errors(f"listing documents under {prefix!r}"):
            rows = await self._ready().fetch(_LIST_DOCUMENTS, prefix, after, limit)
        return [row["doc"] for row in rows]

    async def synced_spaces(self, peer: str) -> frozenset[str]:
        with driver_errors(f"reading the spaces {peer!r} holds"):
            rows = await self._ready().fetch(_SYNCED_SPACES, peer)
        return frozenset(row["space"] for row in rows)

    async def set_synced_spaces(self, peer: str, spaces: Collection[str]) -> None:
        with driver_errors(f"recording the spaces {peer!r} holds"):
            async with self._ready().acquire() as conn, conn.transaction():
                await conn.execute(_FORGET_SPACES, peer)
                await conn.execute(_ADD_SPACES, peer, sorted(spaces))

    async def compact(
        self, name: str, merge: Callable[[list[bytes]], bytes], keep_after: int | None = None
    ) -> int:
        merge_error: Exception
        try:
            with driver_errors(f"compacting {name!r}"):
                async with self._ready().acquire() as conn, _compaction_lock(conn, name):
                    return await _compact_retrying(conn, name, merge, keep_after)
        except _MergeFailed as failed:
            merge_error = failed.error
        # Raised outside the handler: the caller gets merge's exception as it was raised.
        raise merge_error

    async def merge_kept_rows(
        self, name: str, merge: Callable[[list[bytes]], bytes], after: int, plan: CatchupPlan
    ) -> int:
        merge_error: Exception
        try:
            with driver_errors(f"merging the kept rows of {name!r}"):
                async with self._ready().acquire() as conn, _compaction_lock(conn, name):
                    return await _merge_kept(conn, name, merge, after, plan)
        except _MergeFailed as failed:
            merge_error = failed.error
        raise merge_error

    async def rows_after(self, seq: int) -> int:
        with driver_errors(f"counting the log after {seq}"):
            return int(await self._ready().fetchval(_ROWS_AFTER, seq))

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


async def _compact_retrying(
    conn: Connection, name: str, merge: Callable[[list[bytes]], bytes], keep_after: int | None
) -> int:
    attempt = 1
    while True:
        try:
            return await _compact_once(conn, name, merge, keep_after)
        except _RETRYABLE as exc:
            if attempt >= _COMPACT_ATTEMPTS:
                raise
            log.info("compaction of %r hit %s; retrying", name, type(exc).__name__)
            attempt += 1


async def _compact_once(
    conn: Connection, name: str, merge: Callable[[list[bytes]], bytes], keep_after: int | None
) -> int:
    # Why this is safe while other nodes append: in REPEATABLE READ the UPDATE and the DELETE
    # see only the rows of our read's snapshot, so the rows flagged `in_snapshot` are exactly
    # those merged (now or by an earlier compaction), and any row committed since, even one
    # with a lower seq (a writer that skips the log-order lock), stays to be merged next time.
    async with conn.transaction(isolation="repeatable_read"):
        snapshot = await conn.fetchrow(_READ_SNAPSHOT, name)
        through = int(snapshot["through_seq"]) if snapshot is not None else 0
        fresh = await conn.fetch(_READ_FRESH, name)
        if fresh:
            updates = [bytes(row["data"]) for row in fresh]
            if snapshot is not None:
                updates.insert(0, bytes(snapshot["data"]))
            try:
                merged = await asyncio.to_thread(merge, updates)
            except Exception as exc:
                raise _MergeFailed(exc) from None  # rolls back: the log stays as it is
            through = max(through, int(fresh[-1]["seq"]))
            await conn.execute(_WRITE_SNAPSHOT, name, merged, through)
            await conn.execute(_MARK_IN_SNAPSHOT, name, [int(row["seq"]) for row in fresh])
        # Rows after `keep_after` are in the snapshot now, and stay in the log as well until
        # every peer sharing the document acknowledged them.
        # Flagged rows only: a row committed meanwhile is merged next time, whatever its seq.
        delete_through = _EVERY_SEQ if keep_after is None else keep_after
        status = await conn.execute(_DELETE_MERGED, name, delete_through)
    return int(status.rpartition(" ")[2])  # "DELETE <count>"


async def _merge_kept(
    conn: Connection, name: str, merge: Callable[[list[bytes]], bytes], after: int, plan: CatchupPlan
) -> int:
    rows = await conn.fetch(_READ_KEPT, name, after)
    kept = [KeptRow(int(r["seq"]), r["origin"], r["author"], int(r["catchup_level"])) for r in rows]
    catchup = catchup_rows(kept, plan(kept))
    if not catchup:
        return 0
    wanted = [seq for row in catchup for seq in row.seqs]
    data = {int(r["seq"]): bytes(r["data"]) for r in await conn.fetch(_READ_SEQS, name, wanted)}
    if len(data) != len(wanted):
        return 0  # quarantined meanwhile: that row must not come back
    try:
        merged = [await asyncio.to_thread(merge, [data[seq] for seq in row.seqs]) for row in catchup]
    except Exception as exc:
        raise _MergeFailed(exc) from None
    async with conn.transaction():
        # Rows appended meanwhile are not in `wanted`: deleted by seq, they stay.
        status = await conn.execute(_DELETE_SEQS, name, wanted)
        if int(status.rpartition(" ")[2]) != len(wanted):
            raise StoreError(f"merging the kept rows of {name!r}: the log changed under the compaction lock")
        await conn.execute(
            _APPEND_CATCHUP,
            [name] * len(catchup),
            merged,
            [row.origin for row in catchup],
            [row.author for row in catchup],
            [row.level for row in catchup],
            LOG_ORDER_LOCK_CLASS,
        )
    return len(wanted)


def redacted(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is not None:
            userinfo, _, hostinfo = parts.netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            dsn = urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))
    return re.sub(r"(password\s*=\s*)[^&\s]*", r"\1***", dsn, flags=re.IGNORECASE)
