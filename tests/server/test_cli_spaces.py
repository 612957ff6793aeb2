"""`samen space ...` on the configured store (SQLite data folder, or SAMEN_DATABASE_URL):
the operator creates spaces and manages members; every change is audited as "cli", a lower
role or a removal is written to the revocation feed the running nodes follow, and refusals
are a message and exit status 1 with nothing changed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from server.db import Database, PostgresDatabase, SQLiteDatabase

from ..pg_cluster import PgCluster

REPO = Path(__file__).resolve().parents[2]


def samen(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=REPO, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[dict[str, str], Database]]:
    """The CLI's environment, and the database it acts on (people ann and bob in it)."""
    async with AsyncExitStack() as stack:
        if request.param == "postgres":
            cluster: PgCluster = request.getfixturevalue("pg_cluster")
            dsn = await stack.enter_async_context(cluster.fresh_database())
            env, db = {"SAMEN_DATABASE_URL": dsn}, PostgresDatabase(dsn)
        else:
            data = tmp_path / "data"
            env, db = {"SAMEN_DATA_DIR": str(data)}, SQLiteDatabase(data / "samen.sqlite3")
        await db.open()
        stack.push_async_callback(db.close)
        for name in ("ann", "bob"):
            await db.execute(
                "INSERT INTO people (name, site_role, created_at) VALUES ($1, 'member', 0)", name
            )
        yield env, db


async def rows(db: Database, sql: str) -> list[dict[str, Any]]:
    return await db.fetch(sql)


async def test_space_commands(store: tuple[dict[str, str], Database]) -> None:
    env, db = store
    created = samen(env, "space", "create", "eng", "--title", "Engineering", "--join", "request", "--secret")
    assert created.returncode == 0, created.stderr
    # A space of another site: its members come from there, and nothing of it changes here.
    copy = samen(env, "space", "create", "ops", "--title", "Operations", "--home", "berlin")
    assert copy.returncode == 0, copy.stderr
    refused = samen(env, "space", "add-member", "ops", "ann", "--role", "admin")
    assert refused.returncode == 1 and "(space_not_home)" in refused.stderr, refused.stderr
    assert (
        await rows(db, "SELECT slug, title, join_policy, visibility, home FROM spaces ORDER BY slug")
    ) == [
        {"slug": "eng", "title": "Engineering", "join_policy": "request", "visibility": "secret", "home": ""},
        {
            "slug": "ops",
            "title": "Operations",
            "join_policy": "open",
            "visibility": "listed",
            "home": "berlin",
        },
    ]
    changes = [
        ["add-member", "eng", "ann", "--role", "admin"],
        ["add-member", "eng", "bob@local", "--role", "editor"],
        ["set-role", "eng", "bob", "viewer"],
        ["remove-member", "eng", "ann"],
    ]
    for args in changes:
        result = samen(env, "space", *args)
        assert result.returncode == 0, (args, result.stderr)
    assert await rows(db, "SELECT person, role FROM space_members") == [
        {"person": "bob@local", "role": "viewer"}
    ]
    listed = samen(env, "space", "members", "eng")
    assert listed.stdout == "bob@local\tviewer\n"
    # Running nodes follow the feed: the lowered role and the removal are in it, from the CLI.
    assert await rows(db, "SELECT principal, token, prefix, node FROM revocations ORDER BY seq") == [
        {"principal": "bob@local", "token": "", "prefix": "eng/", "node": ""},
        {"principal": "ann@local", "token": "", "prefix": "eng/", "node": ""},
    ]
    audit = await rows(db, "SELECT actor, action, target FROM audit_log ORDER BY seq")
    assert [(a["actor"], a["action"], a["target"]) for a in audit] == [
        ("cli", "space_created", "eng"), ("cli", "space_created", "ops"),
        ("cli", "member_added", "eng/ann@local"),
        ("cli", "member_added", "eng/bob@local"), ("cli", "member_role_changed", "eng/bob@local"),
        ("cli", "member_removed", "eng/ann@local"),
    ]  # fmt: skip


REFUSED = [
    (["create", "../eng", "--title", "x"], "(invalid_slug)"),
    (["create", "eng", "--title", "again"], "(slug_taken)"),
    (["create", "x", "--title", "t", "--home", "a/b"], "(invalid_home)"),
    (["add-member", "eng", "nobody", "--role", "viewer"], "(person_not_found)"),
    (["add-member", "nosuch", "ann", "--role", "viewer"], "(space_not_found)"),
    (["set-role", "eng", "bob", "viewer"], "(member_not_found)"),
    (["remove-member", "eng", "ann\x01"], "(person_not_found)"),
]


async def test_refusals_change_nothing(store: tuple[dict[str, str], Database]) -> None:
    env, db = store
    assert samen(env, "space", "create", "eng", "--title", "Engineering").returncode == 0
    before = {t: await rows(db, f"SELECT * FROM {t}") for t in ("spaces", "space_members", "revocations")}
    for args, message in REFUSED:
        result = samen(env, "space", *args)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert {t: await rows(db, f"SELECT * FROM {t}") for t in before} == before


def test_a_bad_role_is_a_usage_error(tmp_path: Path) -> None:
    result = samen({"SAMEN_DATA_DIR": str(tmp_path)}, "space", "set-role", "eng", "ann", "boss")
    assert result.returncode == 2 and "invalid choice" in result.stderr


async def test_share_and_unshare(store: tuple[dict[str, str], Database]) -> None:
    env, db = store
    assert samen(env, "space", "create", "eng", "--title", "Engineering").returncode == 0
    shared = samen(env, "space", "share", "eng", "berlin")
    assert shared.returncode == 0 and shared.stdout == "space eng shared with berlin\n", shared.stderr
    assert await rows(db, "SELECT space, site FROM space_sites") == [{"space": "eng", "site": "berlin"}]
    assert await rows(db, "SELECT version FROM spaces") == [{"version": 1}]  # the sites get it
    # A person of berlin may join now (not one of a site eng is not shared with).
    assert samen(env, "space", "add-member", "eng", "alice@berlin", "--role", "editor").returncode == 0
    refused = samen(env, "space", "add-member", "eng", "eve@lyon", "--role", "editor")
    assert refused.returncode == 1 and "(person_not_found)" in refused.stderr
    for site, code in (("local", "(invalid_site)"), ("Not A Site", "(invalid_site)")):
        result = samen(env, "space", "share", "eng", site)
        assert result.returncode == 1 and code in result.stderr, result.stderr
    assert samen(env, "space", "unshare", "eng", "berlin").returncode == 0
    assert await rows(db, "SELECT space, site FROM space_sites") == []
