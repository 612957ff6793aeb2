"""The database of the domain tables (people, credentials, audit, spaces, ...): one port,
`Database`, and one SQL text for both backends.

SQL is written once, in the SQL that SQLite and PostgreSQL share, with PostgreSQL's numbered
parameters `$1, $2, ...` (SQLite reads them as `?1, ?2, ...`; no `$` may appear in a string
literal of a query). Times are `double precision` seconds since the epoch, written by the
caller, and flags are integers: both backends then return the same Python values.

The schema lives in the store's numbered migration files (server/store/migrations/), applied
by whichever of the store or the database opens first.

- SQLite: a connection of its own to the store's file (WAL mode, so it and the store's
  connection never block readers), on a thread of its own. Not the store's connection: a
  domain transaction spans several awaits, and the store's group-commit writer would
  otherwise run its own BEGIN inside it. SQLite serialises the two writers (busy_timeout).
- PostgreSQL: a small pool of its own on the store's database.

Transactions: `async with db.transaction():` makes every call of this task on `db` (and of
the services given `db`) run in that transaction, committed at the end of the block and
rolled back if it raises. Driver errors come out as `DatabaseError` (a `StoreError`), a
unique-key violation as `UniqueViolation`.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg

from .errors import StoreError
from .settings import Settings
from .store.migrate import migrate
from .store.pgdriver import Connection, driver_errors
from .store.sqlite import _upgrade as upgrade_sqlite  # the store's own upgrade, shared

__all__ = [
    "Database",
    "DatabaseError",
    "PostgresDatabase",
    "Row",
    "SQLiteDatabase",
    "UniqueViolation",
    "open_database",
]

T = TypeVar("T")
Row = dict[str, Any]

_PARAMETER = re.compile(r"\$(\d+)")


class DatabaseError(StoreError):
    """A query failed; the message says which backend and why."""


class UniqueViolation(DatabaseError):
    """An insert or update would repeat a unique key (a name taken, a token id reused)."""


class Database(Protocol):
    dialect: str  # "sqlite" or "postgres"

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; returns the number of rows it changed."""
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    def transaction(self) -> AbstractAsyncContextManager[None]: ...


def open_database(settings: Settings) -> Database:
    """The database of the node's configured store (not opened yet)."""
    if settings.database_url:
        return PostgresDatabase(settings.database_url)
    return SQLiteDatabase(settings.data_dir / "samen.sqlite3")


# -- SQLite ------------------------------------------------------------------------------


class SQLiteDatabase:
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        # One statement or transaction at a time on the connection; a transaction holds it
        # from BEGIN to COMMIT, and the context variable lets its own calls through.
        self._lock = asyncio.Lock()
        self._in_transaction: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"sqlite-tx-{id(self)}", default=False
        )

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="samen-db")
        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(executor, self._connect)
        except sqlite3.Error as exc:
            executor.shutdown(wait=False)
            raise DatabaseError(f"cannot open {self._path}: {exc}") from exc
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA foreign_keys=ON")
            upgrade_sqlite(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        executor, conn = self._executor, self._conn
        self._executor = self._conn = None
        if executor is None:
            return
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._in_transaction.get():
            return await self._run(fn)
        async with self._lock:
            return await self._run(fn)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None or self._conn is None:
            raise DatabaseError("the database is not open")
        conn = self._conn
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
                raise UniqueViolation(f"SQLite: {exc}") from exc
            raise DatabaseError(f"SQLite: {exc}") from exc
        except sqlite3.Error as exc:
            raise DatabaseError(f"SQLite: {exc}") from exc

    async def execute(self, sql: str, *args: Any) -> int:
        query = _sqlite_sql(sql)
        return await self._call(lambda c: c.execute(query, args).rowcount)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        query = _sqlite_sql(sql)

        def read(conn: sqlite3.Connection) -> list[Row]:
            cursor = conn.execute(query, args)
            names = [column[0] for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return await self._call(read)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        if self._in_transaction.get():
            yield  # joins the enclosing transaction
            return
        async with self._lock:
            await self._run(lambda c: c.execute("BEGIN IMMEDIATE"))
            token = self._in_transaction.set(True)
            try:
                yield
            except BaseException:
                await asyncio.shield(self._run(lambda c: c.execute("ROLLBACK")))
                raise
            else:
                await self._run(lambda c: c.execute("COMMIT"))
            finally:
                self._in_transaction.reset(token)


def _sqlite_sql(sql: str) -> str:
    return _PARAMETER.sub(r"?\1", sql)


# -- PostgreSQL --------------------------------------------------------------------------


class PostgresDatabase:
    dialect = "postgres"

    def __init__(self, dsn: str, *, max_connections: int = 4) -> None:
        self._dsn = dsn
        self._max_connections = max_connections
        self._pool: asyncpg.Pool | None = None
        self._connection: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
            f"pg-tx-{id(self)}", default=None
        )

    async def open(self) -> None:
        with driver_errors("connecting the domain database"):
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._max_connections,
                server_settings={"application_name": "samen-domain"},
            )
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with driver_errors("closing the domain database"):
                await pool.close()

    def _target(self) -> Connection | asyncpg.Pool:
        conn = self._connection.get()
        if conn is not None:
            return conn
        if self._pool is None:
            raise DatabaseError("the database is not open")
        return self._pool

    async def execute(self, sql: str, *args: Any) -> int:
        with _pg_errors():
            status: str = await self._target().execute(sql, *args)
        tail = status.rpartition(" ")[2]
        return int(tail) if tail.isdigit() else 0

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with _pg_errors():
            rows = await self._target().fetch(sql, *args)
        return [dict(row.items()) for row in rows]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        with _pg_errors():
            row = await self._target().fetchrow(sql, *args)
        return None if row is None else dict(row.items())

    async def fetchval(self, sql: str, *args: Any) -> Any:
        with _pg_errors():
            return await self._target().fetchval(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        if self._connection.get() is not None:
            yield  # joins the enclosing transaction
            return
        if self._pool is None:
            raise DatabaseError("the database is not open")
        with _pg_errors():
            async with self._pool.acquire() as conn, conn.transaction():
                token = self._connection.set(conn)
                try:
                    yield
                finally:
                    self._connection.reset(token)


@contextmanager
def _pg_errors() -> Iterator[None]:
    """`driver_errors` (StoreUnavailable / StoreError), with unique-key violations told apart."""
    with driver_errors("querying the domain tables"):
        try:
            yield
        except asyncpg.exceptions.UniqueViolationError as exc:
            raise UniqueViolation(f"PostgreSQL: {exc}") from exc
