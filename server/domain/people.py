"""People of this site: accounts, site roles, suspension, passwords, the link to an identity
provider account, and the IdP-group → space-role mapping.

A person is `name@site`: `name` is the key of the `people` table, `site` the node's site id
(SAMEN_SITE_ID, or "local" without federation), so ids follow the site id the node runs with.
Names are 1-64 characters of a-z, 0-9, ".", "_" and "-" (lower case; starting and ending
with a letter or digit): they go into ids, URLs and logs unescaped.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..auth.passwords import MAX_PASSWORD_BYTES, MIN_PASSWORD_LENGTH, Passwords
from ..db import Database, Row, UniqueViolation
from .errors import Conflict, Invalid, NotFound

__all__ = [
    "SITE_ROLES",
    "People",
    "Person",
    "check_display_name",
    "check_email",
    "check_name",
    "check_site_role",
]

SITE_ROLES = ("admin", "community-manager", "member", "guest")
SPACE_ROLES = ("viewer", "editor", "moderator", "admin")
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,190}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_DISPLAY_NAME = 128


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise Invalid(
            "invalid_name",
            "a name is 1-64 characters of a-z, 0-9, '.', '_' and '-', "
            "starting and ending with a letter or digit",
        )
    return name


def check_site_role(role: str) -> str:
    if role not in SITE_ROLES:
        raise Invalid("invalid_site_role", f"the site role is one of {', '.join(SITE_ROLES)}")
    return role


def check_email(email: str) -> str:
    if email and not _EMAIL.match(email):
        raise Invalid("invalid_email", "not an e-mail address")
    return email


def check_display_name(display_name: str) -> str:
    if len(display_name) > MAX_DISPLAY_NAME or _CONTROL.search(display_name):
        raise Invalid("invalid_display_name", f"at most {MAX_DISPLAY_NAME} characters, no control characters")
    return display_name


def check_password(password: str) -> str:
    size = len(password.encode("utf-8", "surrogatepass"))
    if len(password) < MIN_PASSWORD_LENGTH or size > MAX_PASSWORD_BYTES:
        message = f"a password has {MIN_PASSWORD_LENGTH} characters to {MAX_PASSWORD_BYTES} bytes"
        raise Invalid("invalid_password", message)
    return password


@dataclass(frozen=True, slots=True)
class Person:
    id: str  # "name@site"
    name: str
    site_role: str
    email: str
    display_name: str
    suspended: bool
    created_at: float
    has_password: bool
    idp_groups: tuple[str, ...]


_COLUMNS = "name, email, display_name, site_role, password_hash, idp_groups, suspended_at, created_at"


class People:
    def __init__(
        self, db: Database, site: str, passwords: Passwords, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.site = site
        self.passwords = passwords
        self._clock = clock

    def person_id(self, name: str) -> str:
        return f"{name}@{self.site}"

    def local_name(self, person_id: str) -> str | None:
        """The name of a person of this site from their id; None for another site's."""
        name, at, site = person_id.rpartition("@")
        return name if at and site == self.site and _NAME.match(name) else None

    def _person(self, row: Row) -> Person:
        return Person(
            id=self.person_id(row["name"]),
            name=row["name"],
            site_role=row["site_role"],
            email=row["email"],
            display_name=row["display_name"],
            suspended=row["suspended_at"] is not None,
            created_at=float(row["created_at"]),
            has_password=bool(row["password_hash"]),
            idp_groups=tuple(json.loads(row["idp_groups"])),
        )

    async def add(
        self,
        name: str,
        *,
        site_role: str = "member",
        email: str = "",
        display_name: str = "",
        password: str | None = None,
        oidc_subject: str | None = None,
        idp_groups: Sequence[str] = (),
    ) -> Person:
        check_name(name)
        check_site_role(site_role)
        check_email(email)
        check_display_name(display_name)
        hashed = await self.passwords.hash(check_password(password)) if password is not None else ""
        try:
            await self.db.execute(
                "INSERT INTO people (name, email, display_name, site_role, password_hash, oidc_subject, "
                "idp_groups, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                name, email, display_name, site_role, hashed, oidc_subject, json.dumps(list(idp_groups)),
                self._clock(),
            )  # fmt: skip
        except UniqueViolation:
            raise Conflict("name_taken", f"there is a person named {name!r} already") from None
        return await self.require(name)

    async def get(self, name: str) -> Person | None:
        if not _NAME.match(name):
            return None  # no such name can exist (and PostgreSQL refuses NUL in text)
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM people WHERE name = $1", name)
        return None if row is None else self._person(row)

    async def require(self, name: str) -> Person:
        person = await self.get(name)
        if person is None:
            raise NotFound("person_not_found", f"no person named {name!r}")
        return person

    async def by_id(self, person_id: str) -> Person | None:
        name = self.local_name(person_id)
        return None if name is None else await self.get(name)

    async def page(self, *, after: str = "", limit: int = 100) -> list[Person]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM people WHERE name > $1 ORDER BY name LIMIT $2", after, limit
        )
        return [self._person(row) for row in rows]

    async def count_admins(self) -> int:
        return int(
            await self.db.fetchval(
                "SELECT count(*) FROM people WHERE site_role = 'admin' AND suspended_at IS NULL"
            )
        )

    async def set_site_role(self, name: str, role: str) -> tuple[Person, str]:
        """Returns the person and the role they had."""
        check_site_role(role)
        before = await self.require(name)
        await self.db.execute("UPDATE people SET site_role = $1 WHERE name = $2", role, name)
        return await self.require(name), before.site_role

    async def set_suspended(self, name: str, suspended: bool) -> Person:
        await self.require(name)
        await self.db.execute(
            "UPDATE people SET suspended_at = $1 WHERE name = $2", self._clock() if suspended else None, name
        )
        return await self.require(name)

    async def set_password(self, name: str, password: str) -> None:
        hashed = await self.passwords.hash(check_password(password))
        if not await self.db.execute("UPDATE people SET password_hash = $1 WHERE name = $2", hashed, name):
            raise NotFound("person_not_found", f"no person named {name!r}")

    async def check_password(self, name: str, password: str) -> Person | None:
        """The person if `password` is theirs (suspended or not: the caller decides); None
        otherwise. Costs one argon2 verification whether or not the person exists."""
        row = None
        if _NAME.match(name):
            row = await self.db.fetchrow("SELECT name, password_hash FROM people WHERE name = $1", name)
        hashed = row["password_hash"] if row is not None else ""
        if not await self.passwords.verify(hashed, password):
            return None
        if self.passwords.needs_rehash(hashed):
            await self.set_password(name, password)
        return await self.get(name)

    # -- the identity provider --------------------------------------------------------------

    async def by_oidc_subject(self, subject: str) -> Person | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM people WHERE oidc_subject = $1", subject)
        return None if row is None else self._person(row)

    async def link_oidc(self, name: str, subject: str) -> None:
        await self.db.execute("UPDATE people SET oidc_subject = $1 WHERE name = $2", subject, name)

    async def oidc_subject_of(self, name: str) -> str | None:
        value = await self.db.fetchval("SELECT oidc_subject FROM people WHERE name = $1", name)
        return None if value is None else str(value)

    async def update_from_idp(
        self, name: str, *, email: str, display_name: str, groups: Sequence[str]
    ) -> Person:
        await self.db.execute(
            "UPDATE people SET email = $1, display_name = $2, idp_groups = $3 WHERE name = $4",
            check_email(email), check_display_name(display_name), json.dumps(list(groups)), name,
        )  # fmt: skip
        return await self.require(name)

    async def set_group_role(self, group: str, space: str, role: str) -> None:
        """IdP group `group` gives role `role` in space `space` (the spaces service applies it)."""
        if role not in SPACE_ROLES:
            raise Invalid("invalid_space_role", f"the space role is one of {', '.join(SPACE_ROLES)}")
        await self.db.execute(
            "INSERT INTO idp_group_roles (idp_group, space, role) VALUES ($1, $2, $3) "
            "ON CONFLICT (idp_group, space) DO UPDATE SET role = excluded.role",
            group, space, role,
        )  # fmt: skip

    async def remove_group_role(self, group: str, space: str) -> None:
        await self.db.execute("DELETE FROM idp_group_roles WHERE idp_group = $1 AND space = $2", group, space)

    async def group_space_roles(self, name: str) -> dict[str, list[str]]:
        """space → the roles the person's IdP groups (as of their last IdP sign-in) give them
        there (several groups may map to one space: the caller takes the highest)."""
        person = await self.get(name)
        if person is None or not person.idp_groups:
            return {}
        roles: dict[str, list[str]] = {}
        for row in await self.db.fetch("SELECT idp_group, space, role FROM idp_group_roles ORDER BY space"):
            if row["idp_group"] in person.idp_groups:
                roles.setdefault(row["space"], []).append(row["role"])
        return roles
