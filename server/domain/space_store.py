"""The space tables (migration 0005) through the domain database port (server/db.py): one
SQL text for SQLite and PostgreSQL.

Membership changes go through `put_member` and `delete_member`, which also append to the
ordered membership log in the same transaction. A service that reads, decides and writes
runs in `db.transaction()` and first calls `lock_space`: PostgreSQL locks the space's row
(concurrent changes of one space take turns), SQLite's BEGIN IMMEDIATE already serialises
every writer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ..db import Database, Row, UniqueViolation
from .space_rules import Standing
from .spaces import (
    Invitation,
    InvitationStatus,
    JoinPolicy,
    JoinRequest,
    Member,
    RequestStatus,
    Space,
    SpaceRole,
    Visibility,
    role_rank,
)

__all__ = ["SpaceStore"]

_SPACE_COLUMNS = (
    "slug, title, description, join_policy, visibility, home, archived, default_role, created_by, "
    "created_at, version"
)
_SPACE_UPDATABLE = frozenset(
    {"title", "description", "join_policy", "visibility", "default_role", "archived"}
)
# The authorizer's one query: the space and the principal's role in it.
_S_COLUMNS = ", ".join("s." + c.strip() for c in _SPACE_COLUMNS.split(","))
# The authorizer's one query (a second one only for people with IdP groups): the space, the
# principal's role in it, and its IdP groups ($3: its name on this site, '' for none).
_SPACE_AND_ROLE = f"""
SELECT {_S_COLUMNS}, m.role AS member_role, p.idp_groups AS idp_groups
FROM spaces s
LEFT JOIN space_members m ON m.space = s.slug AND m.person = $2
LEFT JOIN people p ON p.name = $3
WHERE s.slug = $1
"""
_STANDING = """
SELECT
    (SELECT role FROM space_members WHERE space = $1 AND person = $2) AS member_role,
    (SELECT count(*) FROM space_invitations WHERE space = $1 AND person = $2 AND status = 'pending')
        AS invited,
    (SELECT idp_groups FROM people WHERE name = $3) AS idp_groups
"""


def _space(row: Row) -> Space:
    return Space(
        slug=row["slug"],
        title=row["title"],
        description=row["description"],
        join_policy=JoinPolicy(row["join_policy"]),
        visibility=Visibility(row["visibility"]),
        home=row["home"],
        archived=bool(row["archived"]),
        default_role=SpaceRole(row["default_role"]),
        created_by=row["created_by"],
        created_at=float(row["created_at"]),
        version=int(row["version"]),
    )


def _member(row: Row) -> Member:
    return Member(
        row["space"], row["person"], SpaceRole(row["role"]), row["added_by"], float(row["added_at"])
    )


def _request(row: Row) -> JoinRequest:
    return JoinRequest(
        row["id"], row["space"], row["person"], RequestStatus(row["status"]), row["message"],
        float(row["created_at"]), row["decided_by"], float(row["decided_at"]),
    )  # fmt: skip


def _invitation(row: Row) -> Invitation:
    return Invitation(
        row["id"], row["space"], row["person"], SpaceRole(row["role"]), InvitationStatus(row["status"]),
        row["invited_by"], float(row["created_at"]), float(row["decided_at"]),
    )  # fmt: skip


class SpaceStore:
    def __init__(self, db: Database, local_name: Callable[[str], str | None] = lambda _id: None) -> None:
        """`local_name`: the name of a person of this site from their id (None for other
        sites' people): whose IdP groups may give roles in spaces (`idp_group_roles`)."""
        self.db = db
        self._local_name = local_name

    # -- spaces --------------------------------------------------------------------------

    async def create_space(self, space: Space) -> bool:
        """False if the slug is taken (archived spaces keep theirs)."""
        try:
            await self.db.execute(
                f"INSERT INTO spaces ({_SPACE_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                space.slug, space.title, space.description, space.join_policy.value, space.visibility.value,
                space.home, int(space.archived), space.default_role.value, space.created_by,
                space.created_at or time.time(), space.version,
            )  # fmt: skip
        except UniqueViolation:
            return False
        return True

    async def space(self, slug: str) -> Space | None:
        row = await self.db.fetchrow(f"SELECT {_SPACE_COLUMNS} FROM spaces WHERE slug = $1", slug)
        return None if row is None else _space(row)

    async def lock_space(self, slug: str) -> Space | None:
        """The space, locked until the enclosing transaction ends (call inside one)."""
        lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""
        row = await self.db.fetchrow(f"SELECT {_SPACE_COLUMNS} FROM spaces WHERE slug = $1{lock}", slug)
        return None if row is None else _space(row)

    async def space_and_role(self, slug: str, person: str) -> tuple[Space | None, SpaceRole | None]:
        """The space and `person`'s role in it: its membership's, or the higher one its IdP
        groups give there."""
        row = await self.db.fetchrow(_SPACE_AND_ROLE, slug, person, self._local_name(person) or "")
        if row is None:
            return None, None
        return _space(row), await self._role(row, slug)

    async def _role(self, row: Row, slug: str) -> SpaceRole | None:
        role = None if row["member_role"] is None else SpaceRole(row["member_role"])
        groups = _groups(row["idp_groups"])
        if groups:
            mapped = await self._group_roles(groups, slug)
            role = _highest(role, mapped.get(slug))
        return role

    async def _group_roles(self, groups: set[str], slug: str = "") -> dict[str, SpaceRole]:
        """space → the highest role `groups` give there (all spaces, or only `slug`)."""
        rows = await self.db.fetch(
            "SELECT idp_group, space, role FROM idp_group_roles WHERE $1 = '' OR space = $1", slug
        )
        roles: dict[str, SpaceRole] = {}
        for r in rows:
            if r["idp_group"] in groups and r["role"] in _ROLES:
                role, best = SpaceRole(r["role"]), roles.get(r["space"])
                roles[r["space"]] = role if best is None or role_rank(role) > role_rank(best) else best
        return roles

    async def update_space(self, slug: str, **changes: Any) -> None:
        unknown = set(changes) - _SPACE_UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        if not changes:
            return
        names = sorted(changes)
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
        values = [_value(changes[name]) for name in names]
        await self.db.execute(
            f"UPDATE spaces SET {assignments}, version = version + 1 WHERE slug = $1", slug, *values
        )

    async def bump_version(self, slug: str) -> None:
        """A federated space's state changed at its home: its sites get the new version."""
        await self.db.execute("UPDATE spaces SET version = version + 1 WHERE slug = $1", slug)

    async def spaces_with_roles(self, person: str) -> list[tuple[Space, SpaceRole | None]]:
        """Every space with `person`'s role in it (None: not a member), by slug."""
        rows = await self.db.fetch(
            f"""SELECT {_S_COLUMNS}, m.role AS member_role
            FROM spaces s LEFT JOIN space_members m ON m.space = s.slug AND m.person = $1
            ORDER BY s.slug""",
            person,
        )
        name = self._local_name(person)
        groups = (
            _groups(await self.db.fetchval("SELECT idp_groups FROM people WHERE name = $1", name))
            if name
            else set()
        )
        mapped = await self._group_roles(groups) if groups else {}
        return [
            (
                _space(r),
                _highest(
                    None if r["member_role"] is None else SpaceRole(r["member_role"]), mapped.get(r["slug"])
                ),
            )
            for r in rows
        ]

    async def invited_spaces(self, person: str) -> set[str]:
        rows = await self.db.fetch(
            "SELECT space FROM space_invitations WHERE person = $1 AND status = 'pending'", person
        )
        return {r["space"] for r in rows}

    # -- members -------------------------------------------------------------------------

    async def standing(self, slug: str, person: str) -> Standing:
        row = await self.db.fetchrow(_STANDING, slug, person, self._local_name(person) or "")
        assert row is not None
        return Standing(await self._role(row, slug), bool(row["invited"]))

    async def members(self, slug: str) -> list[Member]:
        rows = await self.db.fetch(
            "SELECT space, person, role, added_by, added_at FROM space_members "
            "WHERE space = $1 ORDER BY person",
            slug,
        )
        return [_member(r) for r in rows]

    async def member(self, slug: str, person: str) -> Member | None:
        row = await self.db.fetchrow(
            "SELECT space, person, role, added_by, added_at FROM space_members "
            "WHERE space = $1 AND person = $2",
            slug, person,
        )  # fmt: skip
        return None if row is None else _member(row)

    async def count_admins(self, slug: str) -> int:
        count = await self.db.fetchval(
            "SELECT count(*) FROM space_members WHERE space = $1 AND role = 'admin'", slug
        )
        return int(count)

    async def put_member(
        self, slug: str, person: str, role: SpaceRole, actor: str, *, bump: bool = True
    ) -> None:
        """Add `person` with `role`, or change its role; logged, and the space's version
        raised (`bump` False: a copy applying its home's version)."""
        now = time.time()
        async with self.db.transaction():
            changed = await self.db.execute(
                "UPDATE space_members SET role = $3 WHERE space = $1 AND person = $2",
                slug,
                person,
                role.value,
            )
            if not changed:
                await self.db.execute(
                    "INSERT INTO space_members (space, person, role, added_by, added_at) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    slug, person, role.value, actor, now,
                )  # fmt: skip
            await self._log(slug, person, role.value, actor, now)
            if bump:
                await self.bump_version(slug)

    async def delete_member(self, slug: str, person: str, actor: str, *, bump: bool = True) -> bool:
        async with self.db.transaction():
            removed = await self.db.execute(
                "DELETE FROM space_members WHERE space = $1 AND person = $2", slug, person
            )
            if removed:
                await self._log(slug, person, "", actor, time.time())
                if bump:
                    await self.bump_version(slug)
        return bool(removed)

    async def _log(self, slug: str, person: str, role: str, actor: str, at: float) -> None:
        await self.db.execute(
            "INSERT INTO space_member_log (space, person, role, actor, at) VALUES ($1, $2, $3, $4, $5)",
            slug, person, role, actor, at,
        )  # fmt: skip

    async def member_log(self, slug: str) -> list[tuple[str, str, str]]:
        """(person, role or "" for removed, actor) in order."""
        rows = await self.db.fetch(
            "SELECT person, role, actor FROM space_member_log WHERE space = $1 ORDER BY seq", slug
        )
        return [(r["person"], r["role"], r["actor"]) for r in rows]

    # -- join requests -------------------------------------------------------------------

    async def add_request(self, request: JoinRequest) -> bool:
        """False if a request of that person for that space is already pending."""
        try:
            await self.db.execute(
                "INSERT INTO space_join_requests (id, space, person, status, message, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                request.id, request.space, request.person, request.status.value, request.message,
                request.created_at,
            )  # fmt: skip
        except UniqueViolation:
            return False
        return True

    async def request(self, request_id: str) -> JoinRequest | None:
        row = await self.db.fetchrow("SELECT * FROM space_join_requests WHERE id = $1", request_id)
        return None if row is None else _request(row)

    async def requests(self, slug: str, status: RequestStatus | None) -> list[JoinRequest]:
        rows = await self.db.fetch(
            "SELECT * FROM space_join_requests WHERE space = $1 AND ($2 = '' OR status = $2) "
            "ORDER BY created_at, id",
            slug, "" if status is None else status.value,
        )  # fmt: skip
        return [_request(r) for r in rows]

    async def requests_of(self, person: str) -> list[JoinRequest]:
        rows = await self.db.fetch(
            "SELECT * FROM space_join_requests WHERE person = $1 ORDER BY created_at, id", person
        )
        return [_request(r) for r in rows]

    async def pending_request(self, slug: str, person: str) -> JoinRequest | None:
        row = await self.db.fetchrow(
            "SELECT * FROM space_join_requests WHERE space = $1 AND person = $2 AND status = 'pending'",
            slug, person,
        )  # fmt: skip
        return None if row is None else _request(row)

    async def decide_request(self, request_id: str, status: RequestStatus, actor: str) -> bool:
        """Only a pending request is decided; False if it was not pending any more."""
        changed = await self.db.execute(
            "UPDATE space_join_requests SET status = $2, decided_by = $3, decided_at = $4 "
            "WHERE id = $1 AND status = 'pending'",
            request_id, status.value, actor, time.time(),
        )  # fmt: skip
        return bool(changed)

    # -- invitations ---------------------------------------------------------------------

    async def add_invitation(self, invitation: Invitation) -> bool:
        try:
            await self.db.execute(
                "INSERT INTO space_invitations (id, space, person, role, status, invited_by, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                invitation.id, invitation.space, invitation.person, invitation.role.value,
                invitation.status.value, invitation.invited_by, invitation.created_at,
            )  # fmt: skip
        except UniqueViolation:
            return False
        return True

    async def invitation(self, invitation_id: str) -> Invitation | None:
        row = await self.db.fetchrow("SELECT * FROM space_invitations WHERE id = $1", invitation_id)
        return None if row is None else _invitation(row)

    async def invitations(self, slug: str, status: InvitationStatus | None) -> list[Invitation]:
        rows = await self.db.fetch(
            "SELECT * FROM space_invitations WHERE space = $1 AND ($2 = '' OR status = $2) "
            "ORDER BY created_at, id",
            slug, "" if status is None else status.value,
        )  # fmt: skip
        return [_invitation(r) for r in rows]

    async def invitations_of(self, person: str) -> list[Invitation]:
        rows = await self.db.fetch(
            "SELECT * FROM space_invitations WHERE person = $1 ORDER BY created_at, id", person
        )
        return [_invitation(r) for r in rows]

    async def decide_invitation(self, invitation_id: str, status: InvitationStatus) -> bool:
        changed = await self.db.execute(
            "UPDATE space_invitations SET status = $2, decided_at = $3 WHERE id = $1 AND status = 'pending'",
            invitation_id, status.value, time.time(),
        )  # fmt: skip
        return bool(changed)


_ROLES = frozenset(role.value for role in SpaceRole)


def _groups(raw: str | None) -> set[str]:
    """The IdP groups stored with a person (a JSON list; "[]" for most)."""
    if not raw or raw == "[]":
        return set()
    try:
        groups = json.loads(raw)
    except ValueError:
        return set()
    return {g for g in groups if isinstance(g, str)} if isinstance(groups, list) else set()


def _highest(a: SpaceRole | None, b: SpaceRole | None) -> SpaceRole | None:
    return a if role_rank(a) >= role_rank(b) else b


def _value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, JoinPolicy | Visibility | SpaceRole):
        return value.value
    return value
