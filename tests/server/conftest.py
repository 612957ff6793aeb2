from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

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
