"""Federated spaces: a space's home site decides its settings, members and roles, and the
sites it is shared with hold a copy of them that only the home can change.

- At the home (`Space.home` is "" there) the operator shares the space with other sites
  (`share`, table `space_sites`); every change of its settings, members or sites raises its
  `version` (space_store.py), and the links send the new state, signed by the home's key
  (`membership`; server/federation/membership.py sends and receives it).
- A site takes a space's membership only from the home it was told: the operator created
  the space there with `--home SITE` (`samen space create eng --title ... --home amsterdam`),
  so a peer cannot plant a space, nor take over one of this site's own. `apply` checks the
  sender, the version and every value, then replaces the copy in one transaction and asks
  for revocations of whoever lost access; refused ones store nothing.
- Updates that arrive from a site are checked against the copy (`site_update_refusal`):
  from a site that is not the home, the author must be a user of that site who may write
  by the roles the home sent; from the home, any user of the home (the home decides who of
  its people may write, site admins included). Content without an author (merged state,
  inventories, answers) is taken only from the home.

Suspending a person and revoking a token stay with the person's own site: their sessions are
there, and that site closes them (server/registry.py); no other site is told, none needs to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from protocol.backplane import Revocation
from protocol.space_membership import MembershipBody

from ..auth.ports import Grant, Principal
from .errors import DomainError
from .people import check_name
from .space_rules import check_changeable, document_grant
from .space_service import SpaceService
from .spaces import (
    JoinPolicy,
    Space,
    SpaceError,
    SpaceRole,
    Visibility,
    check_description,
    check_slug,
    check_title,
    role_rank,
)

__all__ = [
    "MAX_MEMBERS",
    "Applied",
    "MembershipRefused",
    "SharedSpace",
    "SpaceFederation",
    "UpdateRefusal",
    "author_site",
    "site_update_refusal",
]

MAX_MEMBERS = 100_000  # a membership with more is refused (bounds the transaction)
MAX_SITES = 1_000
_SITE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")  # as federation/identity.py spells site ids
_ROLES = frozenset(role.value for role in SpaceRole)


class UpdateRefusal(StrEnum):
    """Why an update from a site was refused: the label of its metric."""

    FOREIGN_AUTHOR = "foreign_author"  # the author is not a user of the sending site
    NOT_WRITER = "not_writer"  # the space's roles do not let the author write
    NO_AUTHOR = "no_author"  # content without an author, from a site that is not the home
    CHECKING = "checking"  # the author's access is being checked again (a revocation)


class MembershipRefused(DomainError):
    """A membership that is not applied. `kind` labels the metric."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(kind, message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class SharedSpace:
    """What a site keeps in memory of a federated space: enough to decide, per update and
    without a query, who may write, and which peers share its documents."""

    space: Space
    home: str  # the home's site id (this site's own at the home)
    sites: frozenset[str]  # the sites it is shared with, besides the home
    members: Mapping[str, SpaceRole] = field(default_factory=dict)
    version: int = 0

    def participants(self, own_site: str) -> frozenset[str]:
        """The peers whose links carry this space's documents (every site of the space)."""
        return (self.sites | {self.home}) - {own_site}


def author_site(author: str) -> str:
    """The site part of a principal id ("name@site"); "" if it has none."""
    _name, at, site = author.rpartition("@")
    return site if at else ""


def site_update_refusal(shared: SharedSpace | None, sender: str, author: str) -> UpdateRefusal | None:
    """None if an update of `author` for a document of `shared` may be taken from site
    `sender`. `shared` None: a space of the peers file's deprecated `[spaces]` table, with
    no home: only the author's site is checked."""
    if not author:
        if shared is None or sender == shared.home:
            return None
        return UpdateRefusal.NO_AUTHOR
    if author_site(author) != sender:
        return UpdateRefusal.FOREIGN_AUTHOR
    if shared is None or sender == shared.home:
        return None
    role = shared.members.get(author)
    # The space rules of the SpaceAuthorizer, over the copy of the roles: a person of another
    # site has no site role here, so only its role in the space counts.
    if document_grant(Principal(author), shared.space, role) < Grant.WRITE:
        return UpdateRefusal.NOT_WRITER
    return None


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying a membership changed: the sessions to check again."""

    space: str
    revocations: tuple[Revocation, ...]


class SpaceFederation:
    """Sharing spaces (at their home) and applying the memberships homes send (elsewhere),
    over the space tables; `site` is this site's id."""

    def __init__(self, spaces: SpaceService, site: str) -> None:
        self._spaces = spaces
        self.db = spaces.db
        self.site = site

    # -- at the home ---------------------------------------------------------------------

    async def share(self, actor: Principal, slug: str, site: str, shared: bool = True) -> None:
        """Share the space with `site` (or stop: `shared` False). Only at its home."""
        site = _check_site(site)
        if site == self.site:
            raise SpaceError(422, "invalid_site", "a space is not shared with its own home")
        async with self.db.transaction():
            space = await self._spaces.locked(actor, slug)
            check_changeable(space)
            if shared:
                changed = await self.db.execute(
                    "INSERT INTO space_sites (space, site) VALUES ($1, $2) ON CONFLICT DO NOTHING", slug, site
                )
            else:
                changed = await self.db.execute(
                    "DELETE FROM space_sites WHERE space = $1 AND site = $2", slug, site
                )
            if changed:
                await self._spaces.store.bump_version(slug)
                await self._spaces.record(actor, "space_shared" if shared else "space_unshared", slug, "",
                                          site=site)  # fmt: skip

    async def membership(self, slug: str) -> MembershipBody | None:
        """The state of one of this site's spaces to sign for its sites; None if it is not
        this site's or does not exist."""
        space = await self._spaces.store.space(slug)
        if space is None or space.home:
            return None
        members = await self._spaces.store.members(slug)
        return MembershipBody(
            self.site, slug, space.version, space.title, space.description, space.join_policy.value,
            space.visibility.value, space.archived, space.default_role.value,
            tuple(sorted(await self._sites(slug))), tuple((m.person, m.role.value) for m in members),
        )  # fmt: skip

    # -- what every site keeps in memory -------------------------------------------------

    async def versions(self) -> dict[str, int]:
        """slug -> version of every federated space: a cheap query to poll."""
        rows = await self.db.fetch(
            "SELECT slug, version FROM spaces WHERE home <> '' OR slug IN (SELECT space FROM space_sites)"
        )
        return {r["slug"]: int(r["version"]) for r in rows}

    async def load(self, slugs: list[str]) -> dict[str, SharedSpace]:
        shared = {}
        for slug in slugs:
            space = await self._spaces.store.space(slug)
            if space is None:
                continue
            members = {m.person: m.role for m in await self._spaces.store.members(slug)}
            home = space.home or self.site
            shared[slug] = SharedSpace(
                space, home, frozenset(await self._sites(slug)), members, space.version
            )
        return shared

    async def _sites(self, slug: str) -> list[str]:
        rows = await self.db.fetch("SELECT site FROM space_sites WHERE space = $1 ORDER BY site", slug)
        return [r["site"] for r in rows]

    # -- at the other sites --------------------------------------------------------------

    async def apply(self, body: MembershipBody, sender: str) -> Applied | None:
        """Apply a membership `sender` sent (its signature was verified by the link); None
        if this version was applied already. Raises `MembershipRefused`: nothing stored."""
        if body.home != sender:
            raise MembershipRefused(
                "not_home", f"site {sender} sent the membership of a space of {body.home!r}"
            )
        new = _checked(body)
        async with self.db.transaction():
            space = await self._spaces.store.lock_space(new.slug)
            if space is None or space.home != sender:
                # Only a space this site's operator said is `sender`'s.
                raise MembershipRefused("not_expected", f"{new.slug!r} is not a space of site {sender} here")
            if body.version <= space.version:
                return None
            old = {m.person: m.role for m in await self._spaces.store.members(new.slug)}
            members = dict(body.members)
            await self.db.execute(
                "UPDATE spaces SET title = $2, description = $3, join_policy = $4, visibility = $5, "
                "archived = $6, default_role = $7, version = $8 WHERE slug = $1",
                new.slug, new.title, new.description, new.join_policy.value, new.visibility.value,
                int(new.archived), new.default_role.value, body.version,
            )  # fmt: skip
            await self.db.execute("DELETE FROM space_sites WHERE space = $1", new.slug)
            for site in set(body.sites):
                await self.db.execute("INSERT INTO space_sites (space, site) VALUES ($1, $2)", new.slug, site)
            revocations = []
            for person, role_name in members.items():
                role = SpaceRole(role_name)
                if old.get(person) != role:
                    await self._spaces.store.put_member(new.slug, person, role, "", bump=False)
                    await self._record(sender, "member_replicated", new.slug, person, role.value)
                if person in old and role_rank(role) < role_rank(old[person]):
                    revocations.append(Revocation(principal=person, prefix=new.prefix))
            for person in old.keys() - members.keys():
                await self._spaces.store.delete_member(new.slug, person, "", bump=False)
                await self._record(sender, "member_replicated", new.slug, person, "")
                revocations.append(Revocation(principal=person, prefix=new.prefix))
            if (new.archived and not space.archived) or (new.join_policy, new.visibility) != (
                space.join_policy,
                space.visibility,
            ):
                revocations.append(Revocation(prefix=new.prefix))
        for revocation in revocations:
            await self._spaces.revoke(revocation)
        return Applied(new.slug, tuple(revocations))

    async def _record(self, home: str, action: str, slug: str, person: str, role: str) -> None:
        detail = {"person": person, "role": role}
        await self._spaces.audit.record(action, target=f"{slug}/{person}", site=home, detail=detail)


def _checked(body: MembershipBody) -> Space:
    """The space the membership describes, every value checked: `MembershipRefused`
    "invalid" otherwise (a home that sends what this site cannot store)."""
    try:
        space = Space(
            slug=check_slug(body.space),
            title=check_title(body.title),
            description=check_description(body.description),
            join_policy=JoinPolicy(body.join_policy),
            visibility=Visibility(body.visibility),
            home=_check_site(body.home),
            archived=body.archived,
            default_role=SpaceRole(body.default_role),
        )
        if len(body.members) > MAX_MEMBERS or len(body.sites) > MAX_SITES:
            raise MembershipRefused("invalid", "too many members or sites")
        for site in body.sites:
            _check_site(site)
        people = set()
        for person, role in body.members:
            name, at, site = person.rpartition("@")
            check_name(name)
            _check_site(site)
            if not at or role not in _ROLES or person in people:
                raise MembershipRefused("invalid", f"member {person[:80]!r} or its role is not valid")
            people.add(person)
    except (DomainError, ValueError) as exc:
        if isinstance(exc, MembershipRefused):
            raise
        raise MembershipRefused("invalid", f"the membership holds an invalid value: {exc}") from exc
    return space


def _check_site(site: str) -> str:
    if _SITE_ID.fullmatch(site) is None:
        raise SpaceError(422, "invalid_site", "a site id is 1-63 of a-z, 0-9, '.', '_', '-'")
    return site
