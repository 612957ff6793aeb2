from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from server.db import Database, PostgresDatabase, SQLiteDatabase
from server.store.memory import MemoryStore
from server.store.ports import Store
from server.store.postgres import PostgresStore
from server.store.sqlite import SQLiteStore

from ..pg_cluster import PgCluster


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Every store backend (both ports); the contract tests run against each."""
    async with AsyncExitStack() as stack:
        backend: Store
        if request.param == "memory":
            backend = MemoryStore()
        elif request.param == "postgres":
            # Looked up only here, so the SQLite runs do not start a PostgreSQL cluster.
            cluster: PgCluster = request.getfixturevalue("pg_cluster")
            backend = PostgresStore(await stack.enter_async_context(cluster.fresh_database()))
        else:
            backend = SQLiteStore(tmp_path / "samen.sqlite3")
        await backend.open()
        stack.push_async_callback(backend.close)
        yield backend


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """The domain tables (server/db.py) on SQLite (a file in tmp) and on PostgreSQL (a fresh
    database of the test cluster): domain tests run on both backends."""
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
