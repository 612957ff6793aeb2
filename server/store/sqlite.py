"""The embedded store: SQLite in the data folder, driven from one dedicated thread.

SQLite connections belong to one thread, and a single writer is what SQLite does best, so
every call runs on one worker thread; the event loop only awaits it. WAL mode lets that
thread commit a group of updates with one fsync. One writer also means the log becomes
visible in seq order, as federation needs, with no further locking.

The schema is the one of every backend (migrations/); the file records how many of its
migrations it has (`schema_version`), and opening an older file applies the rest, in one
transaction with the new version.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from ..errors import StoreError
from .migrations import SQLITE, available_migrations, pending
from .ports import AppendRow, CatchupPlan, DocumentLog, KeptRow, LogRow, catchup_rows

__all__ = ["SQLiteStore"]

# Above every seq (both backends number the log with signed 64-bit integers).
_EVERY_SEQ = 2**63 - 1

T = TypeVar("T")


class SQLiteStore:
    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self._path = path
        self._synchronous = synchronous.upper()
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self.applied: list[int] = []  # the migrations the last `open` applied

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None or self._conn is None:
            raise StoreError("the SQLite store is not open")
        conn = self._conn
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite: {exc}") from exc

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="samen-sqlite")
        loop = asyncio.get_running_loop()
        try:
            self._conn = await loop.run_in_executor(self._executor, self._connect)
        except BaseException as exc:
            self._executor.shutdown(wait=False)
            self._executor = None
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open {self._path}: {exc}") from exc
            raise

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        try:
            self.applied = _upgrade(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def load(self, name: str) -> DocumentLog:
        def read(conn: sqlite3.Connection) -> DocumentLog:
            snap = conn.execute("SELECT data, through_seq FROM snapshots WHERE doc = ?", (name,)).fetchone()
            snapshot, after = (bytes(snap[0]), int(snap[1])) if snap else (None, 0)
            rows = conn.execute(
                "SELECT seq, data FROM updates WHERE doc = ? ORDER BY seq", (name,)
            ).fetchall()
            last = int(rows[-1][0]) if rows else after
            return DocumentLog(name, snapshot, [bytes(r[1]) for r in rows], last)

        return await self._run(read)

    async def append(self, rows: Sequence[AppendRow]) -> None:
        now = time.time()
        values = [(row.doc, row.update, row.origin, row.author, now) for row in rows]

        def write(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(
                    "INSERT INTO updates (doc, data, origin, author, at) VALUES (?, ?, ?, ?, ?)", values
                )

        await self._run(write)

    async def quarantine(self, name: str, update: bytes, reason: str) -> int:
        now = time.time()

        def move(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                moved = 0
                for table in ("updates", "snapshots"):
                    conn.execute(
                        f"INSERT INTO quarantined_updates (doc, data, reason, at) "
                        f"SELECT doc, data, ?, ? FROM {table} WHERE doc = ? AND data = ?",
                        (reason, now, name, update),
                    )
                    deleted = conn.execute(f"DELETE FROM {table} WHERE doc = ? AND data = ?", (name, update))
                    removed = deleted.rowcount
                    if table == "snapshots" and removed:
                        # The rows kept in the log are all that is left of them: merged next time.
                        conn.execute("UPDATE updates SET in_snapshot = 0 WHERE doc = ?", (name,))
                    moved += removed
                return moved

        return await self._run(move)

    async def read_log_after(self, seq: int, limit: int) -> list[LogRow]:
        if limit < 1:  # SQLite reads a negative LIMIT as "no limit"
            raise ValueError(f"limit must be at least 1, not {limit}")

        def read(conn: sqlite3.Connection) -> list[LogRow]:
            rows = conn.execute(
                "SELECT seq, doc, data, origin, author FROM updates WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
            return [LogRow(int(r[0]), r[1], bytes(r[2]), r[3], r[4]) for r in rows]

        return await self._run(read)

    async def last_seq(self) -> int:
        # sqlite_sequence, not max(seq): compaction deletes rows, so the maximum can go down.
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'updates'").fetchone()
            return int(row[0]) if row is not None else 0

        return await self._run(read)

    async def get_cursor(self, peer: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT acked_seq FROM federation_cursors WHERE peer = ?", (peer,)).fetchone()
            return int(row[0]) if row is not None else 0

        return await self._run(read)

    async def set_cursor(self, peer: str, seq: int) -> None:
        now = time.time()

        def write(conn: sqlite3.Connection) -> None:
            # max(): a late or repeated acknowledgement never moves the cursor back.
            with _transaction(conn):
                conn.execute(
                    "INSERT INTO federation_cursors (peer, acked_seq, at) VALUES (?, ?, ?) "
                    "ON CONFLICT (peer) DO UPDATE SET "
                    "acked_seq = max(acked_seq, excluded.acked_seq), at = excluded.at",
                    (peer, seq, now),
                )

        await self._run(write)

    async def list_documents(self, prefix: str, after: str, limit: int) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            # The same filter in both arms, so each is a range scan of its index.
            where = "doc > :after AND doc >= :prefix AND substr(doc, 1, length(:prefix)) = :prefix"
            rows = conn.execute(
                f"SELECT doc FROM snapshots WHERE {where} UNION SELECT doc FROM updates WHERE {where} "
                "ORDER BY doc LIMIT :limit",
                {"after": after, "prefix": prefix, "limit": limit},
            ).fetchall()
            return [r[0] for r in rows]

        return await self._run(read)

    async def synced_spaces(self, peer: str) -> frozenset[str]:
        def read(conn: sqlite3.Connection) -> frozenset[str]:
            rows = conn.execute("SELECT space FROM federation_spaces WHERE peer = ?", (peer,)).fetchall()
            return frozenset(r[0] for r in rows)

        return await self._run(read)

    async def set_synced_spaces(self, peer: str, spaces: Collection[str]) -> None:
        now = time.time()

        def write(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute("DELETE FROM federation_spaces WHERE peer = ?", (peer,))
                conn.executemany(
                    "INSERT INTO federation_spaces (peer, space, at) VALUES (?, ?, ?)",
                    [(peer, space, now) for space in sorted(spaces)],
                )

        await self._run(write)

    async def compact(
        self, name: str, merge: Callable[[list[bytes]], bytes], keep_after: int | None = None
    ) -> int:
        # One process owns the SQLite file, so an in-process lock serialises compactions,
        # and its single writer thread gives every later append a higher seq than `last`.
        async with self._lock_for(name):

            def read(conn: sqlite3.Connection) -> tuple[bytes | None, int, list[tuple[int, bytes]]]:
                snap = conn.execute(
                    "SELECT data, through_seq FROM snapshots WHERE doc = ?", (name,)
                ).fetchone()
                snapshot, through = (bytes(snap[0]), int(snap[1])) if snap else (None, 0)
                # Rows in the snapshot already (kept for a peer) are not merged again.
                rows = conn.execute(
                    "SELECT seq, data FROM updates WHERE doc = ? AND in_snapshot = 0 ORDER BY seq", (name,)
                ).fetchall()
                return snapshot, through, [(int(r[0]), bytes(r[1])) for r in rows]

            snapshot, through, fresh = await self._run(read)
            merged: bytes | None = None
            if fresh:
                updates = [update for _, update in fresh]
                merged = await asyncio.to_thread(merge, [snapshot, *updates] if snapshot else updates)
                through = max(through, fresh[-1][0])
            # Rows after `keep_after` go into the snapshot and stay in the log as well, until
            # every peer sharing the document acknowledged them.
            # Flagged rows only: a row committed meanwhile is merged next time, whatever its seq.
            delete_through = _EVERY_SEQ if keep_after is None else keep_after

            def write(conn: sqlite3.Connection) -> int:
                with _transaction(conn):
                    if merged is not None:
                        conn.execute(
                            "INSERT INTO snapshots (doc, data, through_seq, at) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT (doc) DO UPDATE SET data = excluded.data, "
                            "through_seq = excluded.through_seq, at = excluded.at",
                            (name, merged, through, time.time()),
                        )
                        conn.execute(
                            "UPDATE updates SET in_snapshot = 1 "
                            "WHERE seq IN (SELECT value FROM json_each(?))",
                            (json.dumps([seq for seq, _ in fresh]),),
                        )
                    cur = conn.execute(
                        "DELETE FROM updates WHERE doc = ? AND in_snapshot = 1 AND seq <= ?",
                        (name, delete_through),
                    )
                    return cur.rowcount

            return await self._run(write)

    async def merge_kept_rows(
        self, name: str, merge: Callable[[list[bytes]], bytes], after: int, plan: CatchupPlan
    ) -> int:
        async with self._lock_for(name):

            def read_kept(conn: sqlite3.Connection) -> list[KeptRow]:
                rows = conn.execute(
                    "SELECT seq, origin, author, catchup_level FROM updates "
                    "WHERE doc = ? AND seq > ? AND in_snapshot = 1 ORDER BY seq",
                    (name, after),
                ).fetchall()
                return [KeptRow(int(r[0]), r[1], r[2], int(r[3])) for r in rows]

            kept = await self._run(read_kept)
            catchup = catchup_rows(kept, plan(kept))
            if not catchup:
                return 0
            wanted = [seq for row in catchup for seq in row.seqs]

            def read_data(conn: sqlite3.Connection) -> dict[int, bytes]:
                rows = conn.execute(
                    "SELECT seq, data FROM updates WHERE seq IN (SELECT value FROM json_each(?))",
                    (json.dumps(wanted),),
                ).fetchall()
                return {int(r[0]): bytes(r[1]) for r in rows}

            data = await self._run(read_data)
            if len(data) != len(wanted):  # quarantined meanwhile: that row must not come back
                return 0
            merged = [await asyncio.to_thread(merge, [data[seq] for seq in row.seqs]) for row in catchup]
            now = time.time()
            squashed = [
                (name, update, row.origin, row.author, row.level, 1, now)  # 1: of rows in the snapshot
                for row, update in zip(catchup, merged, strict=True)
            ]

            def write(conn: sqlite3.Connection) -> None:
                # Rows appended meanwhile are not in `wanted`: deleted by seq, they stay.
                with _transaction(conn):
                    cur = conn.executemany("DELETE FROM updates WHERE seq = ?", [(seq,) for seq in wanted])
                    if cur.rowcount != len(wanted):  # rolled back: a quarantined row stays out
                        raise StoreError(f"merging the kept rows of {name!r}: the log changed meanwhile")
                    conn.executemany(
                        "INSERT INTO updates (doc, data, origin, author, catchup_level, in_snapshot, at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        squashed,
                    )

            await self._run(write)
            return len(wanted)

    async def rows_after(self, seq: int) -> int:
        def count(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM updates WHERE seq > ?", (seq,)).fetchone()[0])

        return await self._run(count)

    @asynccontextmanager
    async def _lock_for(self, name: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users == 1:  # last user: drop the lock so the table stays small
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)

    async def log_length(self, name: str) -> int:
        def count(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT count(*) FROM updates WHERE doc = ?",
                (name,),
            ).fetchone()
            return int(row[0])

        return await self._run(count)


def _upgrade(conn: sqlite3.Connection) -> list[int]:
    """Apply the migrations the file lacks, in one transaction: a crash or a failing step
    leaves the file at its old version. BEGIN IMMEDIATE also makes a second process opening
    the file meanwhile wait, then find the work done. Returns the versions applied."""
    migrations = available_migrations()
    with _transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = int(row[0]) if row is not None else 0
        # One writer process per file: the versions applied are always 1..version.
        todo = pending(migrations, range(1, version + 1))
        for migration in todo:
            for statement in migration.statements(SQLITE):
                conn.execute(statement)
        newest = migrations[-1].version
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (newest,))
        elif todo:
            conn.execute("UPDATE schema_version SET version = ?", (newest,))
    return [migration.version for migration in todo]


class _transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error (the connection is in autocommit mode)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
