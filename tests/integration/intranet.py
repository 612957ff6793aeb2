"""An intranet for integration tests: people with API tokens and spaces with members,
written straight into a node's store (the SQLite file of its data folder, or a PostgreSQL
database) through the domain services, before or while the nodes run; and the tables read
back, to check what a test did (or did not) change."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.auth.passwords import Passwords
from server.auth.ports import Principal
from server.db import Database, PostgresDatabase, SQLiteDatabase
from server.domain.audit import AuditLog
from server.domain.people import People
from server.domain.revocations import Revocations
from server.domain.space_service import PeopleDirectory, SpaceService
from server.domain.tokens import ApiTokens

__all__ = ["SITE", "Intranet", "intranet"]

SITE = "local"  # the site part of person ids of a node without SAMEN_SITE_ID


@dataclass
class Intranet:
    db: Database
    people: People
    spaces: SpaceService
    tokens: dict[str, str]  # person name -> a write token
    site: str = SITE

    async def add_people(self, roles: Mapping[str, str], *, with_tokens: bool = True) -> None:
        """`roles`: name -> site role. Tokens are made for each unless told not to."""
        api_tokens = ApiTokens(self.db)
        for name, role in roles.items():
            await self.people.add(name, site_role=role)
            if with_tokens:
                _info, self.tokens[name] = await api_tokens.create(name, label="test")

    async def token(self, name: str, scope: str) -> str:
        _info, token = await ApiTokens(self.db).create(name, scope=scope, label="test")
        return token

    def principal(self, name: str, site_role: str = "member") -> Principal:
        return Principal(f"{name}@{self.site}", name, site_role)

    async def rows(self, table: str) -> list[dict[str, Any]]:
        return await self.db.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")


@asynccontextmanager
async def intranet(where: Path | str, site: str = SITE) -> AsyncIterator[Intranet]:
    """`where`: a node's data folder (SQLite) or a PostgreSQL DSN; `site`: the nodes'
    SAMEN_SITE_ID (the site part of the person ids), for federated sites."""
    db: Database = (
        PostgresDatabase(where) if isinstance(where, str) else SQLiteDatabase(where / "samen.sqlite3")
    )
    await db.open()
    try:
        people = People(db, site, Passwords())
        spaces = SpaceService(db, PeopleDirectory(people), AuditLog(db, site), Revocations(db))
        yield Intranet(db, people, spaces, {}, site)
    finally:
        await db.close()
