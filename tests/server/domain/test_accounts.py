"""People, tokens, browser sessions, audit and the revocation feed, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from argon2 import PasswordHasher

from protocol.backplane import Revocation
from server.auth.passwords import Passwords
from server.auth.ports import Credentials
from server.auth.service import build_auth
from server.db import Database
from server.domain.accounts import RateLimited, WrongCredentials, idp_name
from server.domain.errors import Conflict, Invalid, NotFound, Refused
from server.domain.revocations import Revocations
from server.settings import Settings

# Cheap argon2id parameters: the tests check behaviour, not the cost.
FAST = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


class Auth:
    """The services, and what they revoked on "this node"."""

    def __init__(self, database: Database) -> None:
        self.services = build_auth(
            Settings(signin_max_failures=3), node="node-a", db=database, passwords=FAST
        )
        self.revoked: list[Revocation] = []
        self.services.revocations.on_record = self.revoked.append

    def __getattr__(self, name: str) -> Any:
        return getattr(self.services, name)


@pytest.fixture
async def auth(database: Database) -> AsyncIterator[Any]:
    yield Auth(database)


async def test_people_ids_roles_and_argon2id_hashes(auth: Any) -> None:
    ann = await auth.accounts.add_person("ann", actor="cli", site_role="admin", password="correct horse")
    assert ann.id == "ann@local" and ann.site_role == "admin" and ann.has_password
    stored = await auth.db.fetchval("SELECT password_hash FROM people WHERE name = $1", "ann")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert await auth.people.check_password("ann", "correct horse") == ann
    assert await auth.people.check_password("ann", "wrong horse!") is None
    assert await auth.people.check_password("nobody", "correct horse") is None
    with pytest.raises(Conflict):
        await auth.accounts.add_person("ann", actor="cli")
    for bad in ("Ann", "a" * 65, "ann\x00", "a/b", "../x", "bob@site", "", "-x"):
        with pytest.raises(Invalid):
            await auth.accounts.add_person(bad, actor="cli")
    with pytest.raises(Invalid):
        await auth.accounts.add_person("bob", actor="cli", site_role="emperor")
    assert await auth.db.fetchval("SELECT count(*) FROM people") == 1


async def test_the_last_admin_cannot_be_suspended_or_demoted(auth: Any) -> None:
    await auth.accounts.add_person("ann", actor="cli", site_role="admin")
    with pytest.raises(Conflict):
        await auth.accounts.set_suspended("ann", True, actor="cli")
    with pytest.raises(Conflict):
        await auth.accounts.set_site_role("ann", "member", actor="cli")
    await auth.accounts.add_person("bob", actor="cli", site_role="admin")
    person = await auth.accounts.set_site_role("ann", "member", actor="cli")
    assert person.site_role == "member"


async def test_suspension_ends_sessions_revokes_and_is_audited(auth: Any) -> None:
    await auth.accounts.add_person("ann", actor="cli", password="correct horse")
    _person, secret = await auth.accounts.sign_in("ann", "correct horse", "10.0.0.1")
    assert await auth.sessions.lookup(secret) is not None
    stored = await auth.db.fetchval("SELECT secret_hash FROM web_sessions")
    assert stored != secret and len(stored) == 64  # the SHA-256, never the cookie value
    await auth.accounts.set_suspended("ann", True, actor="admin@local", address="10.0.0.2")
    assert await auth.sessions.lookup(secret) is None
    assert auth.revoked == [Revocation(principal="ann@local")]
    rows = await auth.revocations.after(0)
    assert [(node, rev) for _seq, node, rev in rows] == [("node-a", Revocation(principal="ann@local"))]
    with pytest.raises(Refused):
        await auth.accounts.sign_in("ann", "correct horse", "10.0.0.1")
    actions = [e.action for e in await auth.audit.query()]
    assert actions == ["sign_in_failed", "person_suspended", "sign_in", "person_created"]
    suspended = (await auth.audit.query(action="person_suspended"))[0]
    assert (suspended.actor, suspended.target, suspended.address, suspended.site) == (
        "admin@local", "ann@local", "10.0.0.2", "local",
    )  # fmt: skip


async def test_sign_in_is_rate_limited_per_account_and_address(auth: Any) -> None:
    await auth.accounts.add_person("ann", actor="cli", password="correct horse")
    for _ in range(3):
        with pytest.raises(WrongCredentials):
            await auth.accounts.sign_in("ann", "wrong", "10.0.0.1")
    with pytest.raises(RateLimited) as limited:
        await auth.accounts.sign_in("ann", "correct horse", "10.0.0.9")  # the account is locked
    assert limited.value.retry_after > 0
    with pytest.raises(RateLimited):
        await auth.accounts.sign_in("bob", "whatever", "10.0.0.1")  # and so is the address
    await auth.accounts.add_person("cas", actor="cli", password="correct horse")
    await auth.accounts.sign_in("cas", "correct horse", "10.0.0.2")  # others are not


async def test_tokens_are_hashed_scoped_expire_and_revoke(auth: Any) -> None:
    await auth.accounts.add_person("ann", actor="cli")
    info, token = await auth.accounts.create_token("ann", actor="cli", scope="read", lifetime=3600)
    assert token.startswith(f"samen_{info.id}_")
    row = await auth.db.fetchrow("SELECT * FROM api_tokens WHERE id = $1", info.id)
    assert row is not None and token.split("_", 2)[2] not in str(row.values())
    principal = await auth.authenticator.authenticate(_token(token))
    assert (principal.id, principal.token_id, principal.scope) == ("ann@local", info.id, "read")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in (forged, "samen_000000000000_" + "A" * 43, "token", "samen_" + "x" * 100):
        with pytest.raises(Exception, match="not valid"):
            await auth.authenticator.authenticate(_token(bad))
    await auth.accounts.revoke_token(info.id, actor="ann@local")
    assert auth.revoked[-1] == Revocation(principal="ann@local", token=info.id)
    with pytest.raises(Exception, match="not valid"):
        await auth.authenticator.authenticate(_token(token))
    with pytest.raises(NotFound):
        await auth.accounts.revoke_token("000000000000", actor="cli")


async def test_an_expired_token_or_session_proves_nothing(database: Database) -> None:
    now = [1000.0]
    auth = build_auth(Settings(session_idle_timeout=60, session_max_age=600), db=database, passwords=FAST)
    for service in (auth.tokens, auth.sessions, auth.people):
        service._clock = lambda: now[0]
    await auth.people.add("ann")
    _info, token = await auth.tokens.create("ann", lifetime=100)
    _session, secret = await auth.sessions.create("ann")
    assert await auth.tokens.verify(token) is not None and await auth.sessions.lookup(secret) is not None
    now[0] += 59
    assert await auth.sessions.lookup(secret) is not None  # used: the idle time starts again
    now[0] += 101
    assert await auth.tokens.verify(token) is None  # past its lifetime
    assert await auth.sessions.lookup(secret) is None  # idle for more than 60 s
    assert await auth.db.fetchval("SELECT count(*) FROM web_sessions") == 0


async def test_cookie_sessions_need_an_allowed_origin(database: Database) -> None:
    settings = Settings(allowed_origins="https://app.example")
    auth = build_auth(settings, db=database, passwords=FAST)
    await auth.people.add("ann")
    _session, secret = await auth.sessions.create("ann")

    async def principal_id(origin: str) -> str:
        cookies = {"samen_session": secret}
        return (await auth.authenticator.authenticate(_creds(cookies=cookies, origin=origin))).id

    assert await principal_id("http://wiki.local:8000") == "ann@local"  # the server's own origin
    assert await principal_id("https://app.example") == "ann@local"
    assert await principal_id("") == "ann@local"  # not a browser
    for foreign in ("http://evil.example", "null", "http://wiki.local:8001", "https://wiki.local:8000.evil"):
        with pytest.raises(Exception, match="origin"):
            await principal_id(foreign)


async def test_revocation_feed_reaches_other_nodes_not_the_writer(database: Database) -> None:
    seen: list[Revocation] = []
    node = Revocations(database, node="node-a")
    got_one = asyncio.Event()

    def apply(revocation: Revocation) -> None:
        seen.append(revocation)
        got_one.set()

    async with asyncio.TaskGroup() as tasks:
        feed = tasks.create_task(node.run(apply, after=0))
        await Revocations(database, node="node-a").record(Revocation(principal="x@local"))  # its own
        await Revocations(database).record(Revocation(principal="ann@local", token="t1"))  # the CLI
        await asyncio.wait_for(got_one.wait(), 10)
        feed.cancel()
    assert seen == [Revocation(principal="ann@local", token="t1")]


async def test_audit_filters_and_pages(auth: Any) -> None:
    for i in range(7):
        await auth.audit.record(
            "token_created", actor=f"p{i % 2}@local", target="t", address="::1", detail={"i": i}
        )
    page = await auth.audit.query(actor="p0@local", limit=3)
    assert [e.detail["i"] for e in page] == [6, 4, 2]
    rest = await auth.audit.query(actor="p0@local", limit=3, before=page[-1].seq)
    assert [e.detail["i"] for e in rest] == [0]
    assert len(await auth.audit.query(action="sign_in")) == 0
    with pytest.raises(ValueError):
        await auth.audit.record("DROP TABLE")


async def test_idp_names_and_group_roles(auth: Any) -> None:
    assert idp_name({"sub": "1", "preferred_username": "Ann.Smith"}) == "ann.smith"
    assert idp_name({"sub": "1", "email": "Bob Jones@corp.example"}) == "bob-jones"
    assert idp_name({"sub": "U-42"}) == "u-42"
    with pytest.raises(Invalid):
        idp_name({"sub": "…"})
    claims = {"sub": "s1", "preferred_username": "ann", "email": "ann@corp.example", "groups": ["eng", "ops"]}
    person, _secret = await auth.accounts.sign_in_with_idp(
        claims, issuer="https://idp", groups_claim="groups", default_role="member", address=""
    )
    assert person.idp_groups == ("eng", "ops") and person.email == "ann@corp.example"
    await auth.people.set_group_role("eng", "wiki", "editor")
    await auth.people.set_group_role("ops", "wiki", "moderator")
    await auth.people.set_group_role("hr", "payroll", "viewer")
    assert await auth.people.group_space_roles("ann") == {"wiki": ["editor", "moderator"]}
    # The same IdP account again: the same person; a password account of that name is not taken over.
    again, _ = await auth.accounts.sign_in_with_idp(
        {**claims, "groups": []},
        issuer="https://idp",
        groups_claim="groups",
        default_role="member",
        address="",
    )
    assert again.name == "ann" and again.idp_groups == ()
    await auth.people.add("bob", password="correct horse")
    with pytest.raises(Conflict):
        await auth.accounts.sign_in_with_idp(
            {"sub": "s2", "preferred_username": "bob"}, issuer="https://idp", groups_claim="groups",
            default_role="member", address="",
        )  # fmt: skip


def _token(token: str) -> Credentials:
    return _creds(token=token)


def _creds(token: str = "", cookies: dict[str, str] | None = None, origin: str = "") -> Credentials:
    return Credentials(token=token, cookies=cookies or {}, origin=origin, host="wiki.local:8000")
