"""Session-wide fixtures: one private PostgreSQL cluster for the whole run (tests/pg_cluster.py),
started on first use, and a fresh database per test on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from .pg_cluster import PgCluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    with PgCluster() as cluster:
        yield cluster


@pytest.fixture
async def pg_dsn(pg_cluster: PgCluster) -> AsyncIterator[str]:
    """The DSN of a new empty database, dropped after the test."""
    async with pg_cluster.fresh_database() as dsn:
        yield dsn
