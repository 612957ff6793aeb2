"""`samen migrate` and the PostgreSQL store's start: apply the migrations of
`server/store/migrations/` the database lacks.

Everything runs in one transaction that first takes a transaction-level advisory lock:
nodes that start together take turns, and each version is applied exactly once, together
with the row recording it. (The SQLite store applies the same files in sqlite.py.)
"""

from __future__ import annotations

import asyncpg

from .migrations import POSTGRES, Migration, available_migrations, pending
from .pgdriver import MIGRATION_LOCK_CLASS, Connection, driver_errors

__all__ = ["migrate"]

_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS samen_schema_migrations (
    version    int         PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


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
        applied = [row[0] for row in await conn.fetch("SELECT version FROM samen_schema_migrations")]
        done: list[int] = []
        for migration in pending(migrations, applied):
            with driver_errors(f"applying migration {migration.name}"):
                await conn.execute(migration.render(POSTGRES))
            await conn.execute("INSERT INTO samen_schema_migrations (version) VALUES ($1)", migration.version)
            done.append(migration.version)
        return done
