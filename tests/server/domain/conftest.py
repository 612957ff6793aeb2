"""The `database` fixture: the domain tables on SQLite (a file in tmp) and on PostgreSQL (a
fresh database of the test cluster), so every domain test runs on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.db import Database, PostgresDatabase, SQLiteDatabase

from ...pg_cluster import PgCluster


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    db: Database
    if request.param == "postgres":
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        async with cluster.fresh_database() as dsn:
            db = PostgresDatabase(dsn)
            await db.open()
            try:
                yield db
            finally:
                await db.close()
        return
    db = SQLiteDatabase(tmp_path / "samen.sqlite3")
    await db.open()
    try:
        yield db
    finally:
        await db.close()
