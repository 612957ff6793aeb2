"""Schema migrations of the PostgreSQL store, and the driver-error translation that the
migration runner and the store (postgres.py) share.

The numbered SQL files of `server/store/migrations/` are applied in order, in one
transaction that first takes a transaction-level advisory lock: nodes that start together
take turns, and each version is applied exactly once, together with the row recording it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ..errors import StoreError, StoreUnavailable

__all__ = ["Migration", "available_migrations", "driver_errors", "migrate"]

# Advisory lock keys are (class, key) pairs of int4; the classes spell "SAMM", "SAMC" and
# "SAML" so Samen's locks do not collide with other applications sharing the database.
MIGRATION_LOCK_CLASS = 0x53414D4D
COMPACTION_LOCK_CLASS = 0x53414D43
LOG_ORDER_LOCK_CLASS = 0x53414D4C  # key 0: one lock for the whole update log

_PACKAGE = "server.store.migrations"
_FILE_NAME = re.compile(r"^(\d{4})_\w+\.sql$")

_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS samen_schema_migrations (
    version    int         PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

# A retry may succeed after any of these: the server is down, restarting, shutting down or
# out of connection slots, or the network between us failed (OSError covers ConnectionError
# and TimeoutError).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    OSError,
)

Connection = asyncpg.Connection | PoolConnectionProxy


@contextmanager
def driver_errors(action: str) -> Iterator[None]:
    """Translate asyncpg's errors raised inside the block into `StoreUnavailable` (a retry
    may succeed) or `StoreError`; `action` says what was being done, for the message."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"PostgreSQL unavailable while {action}: {_describe(exc)}") from exc
    except asyncpg.InterfaceError as exc:
        # asyncpg reports a connection it already saw closing as an InterfaceError.
        if "connection is closed" in str(exc) or "connection was closed" in str(exc):
            raise StoreUnavailable(f"PostgreSQL unavailable while {action}: {exc}") from exc
        raise StoreError(f"PostgreSQL client error while {action}: {exc}") from exc
    except (asyncpg.PostgresError, asyncpg.exceptions.InternalClientError) as exc:
        raise StoreError(f"PostgreSQL error while {action}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """The SQL files shipped in `server/store/migrations/`, by version."""
    found: dict[int, Migration] = {}
    for entry in resources.files(_PACKAGE).iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match[1])
        if version in found:
            raise StoreError(f"two migrations claim version {version}: {found[version].name}, {entry.name}")
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    if not found:
        # Applying nothing would "succeed" and leave a database without tables.
        raise StoreError(f"no migration files in {_PACKAGE}: installed without its .sql files?")
    return [found[version] for version in sorted(found)]


async def migrate(conn_or_dsn: Connection | str) -> list[int]:
    """Apply the migrations the database lacks; returns the versions applied (in order).

    Takes a DSN (opens and closes its own connection) or a connection that is not inside a
    transaction. Raises `StoreUnavailable` when PostgreSQL cannot be reached and `StoreError`
    when a migration fails (nothing of it is applied) or the database is newer than this code.
    """
    migrations = available_migrations()
    with driver_errors("migrating the schema"):
        if not isinstance(conn_or_dsn, str):
            return await _apply(conn_or_dsn, migrations)
        conn = await asyncpg.connect(conn_or_dsn)
        try:
            return await _apply(conn, migrations)
        finally:
            await conn.close()


async def _apply(conn: Connection, migrations: list[Migration]) -> list[int]:
    async with conn.transaction():
        # Released at commit or rollback: a node that waited here then sees what the first
        # one applied, and applies nothing twice.
        await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", MIGRATION_LOCK_CLASS)
        await conn.execute(_CREATE_VERSION_TABLE)
        applied = {row[0] for row in await conn.fetch("SELECT version FROM samen_schema_migrations")}
        _refuse_newer_schema(applied, migrations)
        done: list[int] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            with driver_errors(f"applying migration {migration.name}"):
                await conn.execute(migration.sql)
            await conn.execute("INSERT INTO samen_schema_migrations (version) VALUES ($1)", migration.version)
            done.append(migration.version)
        return done


def _refuse_newer_schema(applied: set[int], migrations: list[Migration]) -> None:
    # A database migrated by a newer release may have a shape this code would corrupt.
    newest_known = migrations[-1].version
    unknown = sorted(version for version in applied if version > newest_known)
    if unknown:
        raise StoreError(
            f"the database schema has migrations {unknown} that this server does not know "
            f"(it knows up to {newest_known}); upgrade the server"
        )
