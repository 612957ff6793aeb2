"""What can be done with spaces, by whom: the operations of the REST API and the CLI.

Every operation decides with `space_rules.check` (the same rules as the authorizer), writes
in one transaction, records the audit event, and only after the commit asks for a
revocation when access may have gone down (a member removed, a role lowered, a space
archived, its policy or visibility changed): live sessions are then checked again against
what was just committed, on every node.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from protocol.backplane import Revocation

from ..auth.ports import Principal
from ..db import Database
from .errors import DomainError
from .people import People, check_name
from .space_admission import Admissions
from .space_rules import (
    ADMIN,
    COMMUNITY_MANAGER,
    Action,
    Standing,
    check,
    check_changeable,
    check_decided_here,
    check_signed_in,
    check_writable,
    sees,
)
from .space_store import SpaceStore
from .spaces import (
    JoinPolicy,
    Member,
    Space,
    SpaceError,
    SpaceRole,
    Visibility,
    check_description,
    check_home,
    check_slug,
    check_title,
    role_rank,
)

__all__ = [
    "OPERATOR",
    "Audit",
    "Directory",
    "PeopleDirectory",
    "Revoker",
    "SpaceService",
    "SpaceView",
]

log = logging.getLogger(__name__)

_SITE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")  # as federation/identity.py spells site ids


class Directory(Protocol):
    async def person_id(self, name: str) -> str | None:
        """The id ("name@site") of the person `name` ("name" or "name@site") of this site,
        None if there is none."""
        ...

    def local_name(self, person_id: str) -> str | None:
        """The name of a person of this site from their id; None for other sites'."""
        ...


class PeopleDirectory:
    """`Directory` over the people of this site (`domain.people.People`). A person of
    another site ("alice@berlin") is taken as named, if the id is well-formed: that site
    vouches for its people, and they act in a federated space only through it. A name that
    cannot be a person's (too long, NUL, control characters) is not looked up at all."""

    def __init__(self, people: People) -> None:
        self._people = people

    @property
    def site(self) -> str:
        return self._people.site

    def local_name(self, person_id: str) -> str | None:
        return self._people.local_name(person_id)

    async def person_id(self, name: str) -> str | None:
        local = self._people.local_name(name) if "@" in name else name
        if local is None:
            other, _at, site = name.rpartition("@")
            return name if _is_name(other) and _SITE_ID.fullmatch(site) else None
        if not _is_name(local):
            return None
        person = await self._people.get(local)
        return None if person is None else person.id


def _is_name(name: str) -> bool:
    try:
        check_name(name)
    except DomainError:
        return False
    return True


class Audit(Protocol):
    """`domain.audit.AuditLog`."""

    async def record(
        self,
        action: str,
        *,
        actor: str = "",
        target: str = "",
        address: str = "",
        site: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None: ...


class Revoker(Protocol):
    """`domain.revocations.Revocations`: a row every node follows, and this node at once."""

    async def record(self, revocation: Revocation) -> None:
        """Have the matching live sessions of every node checked again."""
        ...


@dataclass(frozen=True, slots=True)
class SpaceView:
    """A space as one caller sees it: with its own role and invitation."""

    space: Space
    role: SpaceRole | None
    invited: bool = False


class SpaceService:
    def __init__(self, db: Database, people: Directory, audit: Audit, revoker: Revoker) -> None:
        self.db = db
        self.store = SpaceStore(db, people.local_name)
        self._people = self.directory = people
        self._audit = self.audit = audit
        self._revoker = revoker
        self.admissions = Admissions(self)

    # -- reading -------------------------------------------------------------------------

    async def list_spaces(self, actor: Principal) -> list[SpaceView]:
        check_signed_in(actor)
        invited = await self.store.invited_spaces(actor.id)
        views = []
        for space, role in await self.store.spaces_with_roles(actor.id):
            standing = Standing(role, space.slug in invited)
            if sees(actor, space, standing):
                views.append(SpaceView(space, role, standing.invited))
        return views

    async def get(self, actor: Principal, slug: str) -> SpaceView:
        space, standing = await self.load(actor, slug)
        check(Action.SEE, actor, space, standing)
        assert space is not None
        return SpaceView(space, standing.role, standing.invited)

    async def members(self, actor: Principal, slug: str) -> list[Member]:
        space, standing = await self.load(actor, slug)
        check(Action.LIST_MEMBERS, actor, space, standing)
        return await self.store.members(slug)

    async def load(self, actor: Principal, slug: str) -> tuple[Space | None, Standing]:
        check_signed_in(actor)
        if not _plausible_slug(slug):
            return None, Standing()
        space = await self.store.space(slug)
        if space is None:
            return None, Standing()
        return space, await self.store.standing(slug, actor.id)

    async def locked(self, actor: Principal, slug: str, action: Action = Action.MANAGE) -> Space:
        """Inside a transaction: the space, locked, after `action` was checked on it."""
        check_signed_in(actor)
        space = await self.store.lock_space(slug) if _plausible_slug(slug) else None
        standing = Standing() if space is None else await self.store.standing(slug, actor.id)
        return check(action, actor, space, standing)

    # -- spaces --------------------------------------------------------------------------

    async def create(
        self,
        actor: Principal,
        slug: str,
        title: str,
        *,
        description: str = "",
        join_policy: JoinPolicy = JoinPolicy.OPEN,
        visibility: Visibility = Visibility.LISTED,
        home: str = "",
        address: str = "",
    ) -> Space:
        """Site admins and community managers create spaces (and become their admins unless
        they act from the CLI): members may not, as "slug taken" would tell them that a
        secret space exists."""
        check_signed_in(actor)
        if actor.site_role not in (ADMIN, COMMUNITY_MANAGER):
            raise SpaceError(403, "forbidden", "only site admins and community managers create spaces")
        check_writable(actor)
        if home and home == getattr(self.directory, "site", None):
            home = ""  # this site's own id: the space is this site's
        space = Space(
            slug=check_slug(slug),
            title=check_title(title),
            description=check_description(description),
            join_policy=join_policy,
            visibility=visibility,
            home=check_home(home),
            created_by=actor.id,
            created_at=time.time(),
        )
        async with self.db.transaction():
            if not await self.store.create_space(space):
                raise SpaceError(409, "slug_taken", f"a space {slug!r} exists already")
            detail = {"title": title, "join_policy": join_policy.value, "visibility": visibility.value}
            await self.record(actor, "space_created", slug, address, **detail, home=home)
            if not _is_operator(actor) and not space.home:  # a copy's members come from its home
                await self.store.put_member(slug, actor.id, SpaceRole.ADMIN, actor.id)
                await self.record(actor, "member_added", slug, address, person=actor.id, role="admin")
        return space

    async def update(
        self,
        actor: Principal,
        slug: str,
        *,
        title: str | None = None,
        description: str | None = None,
        join_policy: JoinPolicy | None = None,
        visibility: Visibility | None = None,
        default_role: SpaceRole | None = None,
        address: str = "",
    ) -> Space:
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = check_title(title)
        if description is not None:
            changes["description"] = check_description(description)
        for name, value in (
            ("join_policy", join_policy),
            ("visibility", visibility),
            ("default_role", default_role),
        ):
            if value is not None:
                changes[name] = value
        async with self.db.transaction():
            space = await self.locked(actor, slug)
            check_changeable(space)
            changes = {k: v for k, v in changes.items() if getattr(space, k) != v}
            await self.store.update_space(slug, **changes)
            if changes:
                await self.record(
                    actor, "space_updated", slug, address, **{k: str(v) for k, v in changes.items()}
                )
        if "join_policy" in changes or "visibility" in changes:
            # Readers who were not members (open spaces) may have lost their access.
            await self.revoke(Revocation(prefix=space.prefix))
        return dataclasses.replace(space, **changes)

    async def set_archived(self, actor: Principal, slug: str, archived: bool, *, address: str = "") -> Space:
        async with self.db.transaction():
            space = await self.locked(actor, slug)
            check_decided_here(space)
            if space.archived != archived:
                await self.store.update_space(slug, archived=archived)
                await self.record(actor, "space_archived" if archived else "space_unarchived", slug, address)
        if archived and not space.archived:
            await self.revoke(Revocation(prefix=space.prefix))
        return dataclasses.replace(space, archived=archived)

    # -- members -------------------------------------------------------------------------

    async def add_member(
        self, actor: Principal, slug: str, name: str, role: SpaceRole, *, address: str = ""
    ) -> Member:
        async with self.db.transaction():
            space = await self.locked(actor, slug)
            check_changeable(space)
            person = await self.person(name, slug)  # after the check: who may not, learns nothing
            if await self.store.member(slug, person) is not None:
                raise SpaceError(409, "already_member", f"{person} is a member already; set the role instead")
            await self.store.put_member(slug, person, role, actor.id)
            await self.record(actor, "member_added", slug, address, person=person, role=role.value)
        return Member(slug, person, role, actor.id, time.time())

    async def set_role(
        self, actor: Principal, slug: str, name: str, role: SpaceRole, *, address: str = ""
    ) -> Member:
        async with self.db.transaction():
            space = await self.locked(actor, slug)
            check_changeable(space)
            person = await self.person(name)
            current = await self.store.member(slug, person)
            if current is None:
                raise SpaceError(404, "member_not_found", f"{person} is not a member of this space")
            if current.role == role:
                return current
            if current.role == SpaceRole.ADMIN:
                await self._keep_an_admin(actor, slug)
            await self.store.put_member(slug, person, role, actor.id)
            await self.record(actor, "member_role_changed", slug, address, person=person,
                               role=role.value, previous=current.role.value)  # fmt: skip
        if role_rank(role) < role_rank(current.role):
            await self.revoke(Revocation(principal=person, prefix=space.prefix))
        return dataclasses.replace(current, role=role)

    async def remove_member(self, actor: Principal, slug: str, name: str, *, address: str = "") -> None:
        """Space admins and site admins remove anyone; every member may leave."""
        leaving = await self._people.person_id(name) == actor.id
        async with self.db.transaction():
            space = await self.locked(actor, slug, Action.SEE if leaving else Action.MANAGE)
            check_writable(actor)
            check_changeable(space)
            person = await self.person(name)
            current = await self.store.member(slug, person)
            if current is None:
                raise SpaceError(404, "member_not_found", f"{person} is not a member of this space")
            if current.role == SpaceRole.ADMIN:
                await self._keep_an_admin(actor, slug)
            await self.store.delete_member(slug, person, actor.id)
            await self.record(actor, "member_removed", slug, address, person=person,
                               previous=current.role.value)  # fmt: skip
        await self.revoke(Revocation(principal=person, prefix=space.prefix))

    async def _keep_an_admin(self, actor: Principal, slug: str) -> None:
        """A space admin cannot leave the space without one; a site admin (or the CLI) can,
        as it can always step in."""
        if actor.site_role != ADMIN and await self.store.count_admins(slug) <= 1:
            raise SpaceError(409, "last_admin", "the space needs another admin first")

    # -- helpers -------------------------------------------------------------------------

    async def person(self, name: str, joining: str = "") -> str:
        """The id of the person `name`. `joining`: the space they are to join; a person of
        another site may join only a space shared with that site."""
        person = await self._people.person_id(name)
        if person is not None and joining and self._people.local_name(person) is None:
            site = person.rpartition("@")[2]
            if not await self.db.fetchval(
                "SELECT count(*) FROM space_sites WHERE space = $1 AND site = $2", joining, site
            ):
                person = None
        if person is None:
            raise SpaceError(404, "person_not_found", "no such person on this site")
        return person

    async def record(self, actor: Principal, action: str, target: str, address: str, **detail: Any) -> None:
        """In the caller's transaction: the audit entry commits (or not) with the change. The
        target is the space, or "space/person" when the event is about someone."""
        if "person" in detail:
            target = f"{target}/{detail['person']}"
        await self._audit.record(action, actor=actor.id, target=target, address=address, detail=detail)

    async def revoke(self, revocation: Revocation) -> None:
        try:
            await self._revoker.record(revocation)
        except Exception:
            # The change is committed; the revocation feed (written first by the revoker)
            # still reaches the nodes. Never report a committed change as failed.
            log.exception("revocation %r could not be published", revocation)


# The CLI acts as the operator: a site admin with no account (the audit log's actor "cli";
# with no "@site" it is nobody's id), which joins no space it creates.
OPERATOR = Principal("cli", "cli", ADMIN)


def _is_operator(actor: Principal) -> bool:
    return actor.id == OPERATOR.id


def _plausible_slug(slug: str) -> bool:
    try:
        check_slug(slug)
    except SpaceError:
        return False
    return True
