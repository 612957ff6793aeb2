"""The domain database port (server/db.py) behaves the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.db import Database, SQLiteDatabase, UniqueViolation
from server.store.sqlite import SQLiteStore


async def test_one_sql_text_runs_on_both(database: Database) -> None:
    assert (
        await database.execute(
            "INSERT INTO idp_group_roles (idp_group, space, role) VALUES ($1, $2, $3)",
            "eng",
            "wiki",
            "editor",
        )
        == 1
    )
    await database.execute(
        "INSERT INTO audit_log (at, site, actor, action, detail) VALUES ($1, $2, $3, $4, $5)",
        12.5, "local", "ann@local", "test", "{}",
    )  # fmt: skip
    row = await database.fetchrow(
        "SELECT idp_group, space, role FROM idp_group_roles WHERE idp_group = $1", "eng"
    )
    assert row == {"idp_group": "eng", "space": "wiki", "role": "editor"}
    assert await database.fetchval("SELECT at FROM audit_log WHERE actor = $1", "ann@local") == 12.5
    assert await database.fetchrow("SELECT * FROM idp_group_roles WHERE idp_group = $1", "none") is None
    # The same parameter twice, and a parameter used out of order.
    rows = await database.fetch(
        "SELECT role FROM idp_group_roles WHERE space = $2 AND (idp_group = $1 OR idp_group = $1)",
        "eng",
        "wiki",
    )
    assert rows == [{"role": "editor"}]


async def test_unique_violation_is_told_apart(database: Database) -> None:
    sql = "INSERT INTO idp_group_roles (idp_group, space, role) VALUES ($1, $2, $3)"
    await database.execute(sql, "g", "s", "viewer")
    with pytest.raises(UniqueViolation):
        await database.execute(sql, "g", "s", "editor")


async def test_transaction_commits_or_rolls_back_as_a_whole(database: Database) -> None:
    sql = "INSERT INTO idp_group_roles (idp_group, space, role) VALUES ($1, $2, $3)"
    with pytest.raises(RuntimeError):
        async with database.transaction():
            await database.execute(sql, "a", "s", "viewer")
            async with database.transaction():  # joins the outer one
                await database.execute(sql, "b", "s", "viewer")
            raise RuntimeError("abort")
    assert await database.fetchval("SELECT count(*) FROM idp_group_roles") == 0
    async with database.transaction():
        await database.execute(sql, "a", "s", "viewer")
        await database.execute(sql, "b", "s", "viewer")
    assert await database.fetchval("SELECT count(*) FROM idp_group_roles") == 2


async def test_other_tasks_wait_for_a_transaction(database: Database) -> None:
    """A statement of another task never lands inside someone else's open transaction."""
    sql = "INSERT INTO idp_group_roles (idp_group, space, role) VALUES ($1, $2, $3)"
    inside = asyncio.Event()
    release = asyncio.Event()

    async def long_transaction() -> None:
        with pytest.raises(RuntimeError):
            async with database.transaction():
                await database.execute(sql, "tx", "s", "viewer")
                inside.set()
                await release.wait()
                raise RuntimeError("roll back")

    async def other() -> None:
        await inside.wait()
        await database.execute(sql, "other", "s", "viewer")

    first = asyncio.create_task(long_transaction())
    second = asyncio.create_task(other())
    await inside.wait()
    release.set()
    await asyncio.gather(first, second)
    rows = await database.fetch("SELECT idp_group FROM idp_group_roles ORDER BY idp_group")
    assert rows == [{"idp_group": "other"}]


async def test_sqlite_database_shares_the_store_file(tmp_path: Path) -> None:
    """The store and the domain database open one file, in either order, with one schema."""
    path = tmp_path / "samen.sqlite3"
    db = SQLiteDatabase(path)
    await db.open()
    store = SQLiteStore(path)
    await store.open()
    try:
        assert store.applied == []  # the database applied every migration already
        assert await db.fetchval("SELECT count(*) FROM people") == 0
    finally:
        await store.close()
        await db.close()
