"""The REST API in-process: the FastAPI app mounted at /api/v1 of a Starlette app (as
server/app.py does), over the `database` fixture (SQLite and PostgreSQL), driven by httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from starlette.applications import Starlette
from starlette.routing import Mount

from protocol.backplane import Revocation
from server.api.app import create_api
from server.api.context import ApiContext
from server.auth.passwords import Passwords
from server.auth.service import AuthServices, build_auth
from server.db import Database
from server.settings import Settings

FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
BASE = "http://wiki.test"
PASSWORD = "correct horse"


@dataclass
class Api:
    auth: AuthServices
    client: Callable[..., httpx.AsyncClient]
    revoked: list[Revocation] = field(default_factory=list)

    @asynccontextmanager
    async def signed_in(
        self, name: str, password: str = PASSWORD
    ) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
        """A client with the session cookie of `name`, and its CSRF token."""
        async with self.client() as client:
            response = await client.post("/api/v1/session", json={"name": name, "password": password})
            assert response.status_code == 200, response.text
            yield client, response.json()["csrf_token"]

    async def token(self, name: str, scope: str = "write") -> str:
        _info, token = await self.auth.accounts.create_token(name, actor="cli", scope=scope)
        return token

    def bearer(self, token: str) -> httpx.AsyncClient:
        return self.client(headers={"Authorization": f"Bearer {token}"})

    async def count(self, table: str) -> int:
        return int(await self.auth.db.fetchval(f"SELECT count(*) FROM {table}"))


def make_api(database: Database, settings: Settings | None = None, **client_args: Any) -> Api:
    auth = build_auth(settings or Settings(), node="node-a", db=database, passwords=FAST)
    app = Starlette(routes=[Mount("/api/v1", app=create_api(ApiContext(auth)))])
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 4711))

    def client(**kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=transport, base_url=client_args.get("base_url", BASE), **kwargs)

    api = Api(auth, client)
    auth.revocations.on_record = api.revoked.append
    return api


@pytest.fixture
async def api(database: Database) -> AsyncIterator[Api]:
    api = make_api(database)
    await api.auth.accounts.add_person("root", actor="cli", site_role="admin", password=PASSWORD)
    await api.auth.accounts.add_person("ann", actor="cli", password=PASSWORD, email="ann@corp.example")
    yield api
