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
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from protocol.backplane import Revocation

from ..auth.ports import Principal
from ..db import Database
from .space_rules import ADMIN, COMMUNITY_MANAGER, GUEST, Action, Standing, check, check_changeable, sees
from .space_store import SpaceStore
from .spaces import (
    Invitation,
    InvitationStatus,
    JoinPolicy,
    JoinRequest,
    Member,
    RequestStatus,
    Space,
    SpaceError,
    SpaceRole,
    Visibility,
    check_description,
    check_slug,
    check_title,
    role_rank,
)

__all__ = ["OPERATOR", "Audit", "Joined", "People", "Revoker", "SpaceService", "SpaceView"]

log = logging.getLogger(__name__)


class People(Protocol):
    async def person_id(self, name: str) -> str | None:
        """The id ("name@site") of the person `name` ("name" or "name@site") of this site,
        None if there is none."""
        ...


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


@dataclass(frozen=True, slots=True)
class Joined:
    """What `join` did: a membership (open spaces) or a pending request (on request)."""

    member: Member | None = None
    request: JoinRequest | None = None


def _new_id() -> str:
    return secrets.token_hex(8)


class SpaceService:
    def __init__(self, db: Database, people: People, audit: Audit, revoker: Revoker) -> None:
        self.db = db
        self.store = SpaceStore(db)
        self._people = people
        self._audit = audit
        self._revoker = revoker

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
        space, standing = await self._load(actor, slug)
        check(Action.SEE, actor, space, standing)
        assert space is not None
        return SpaceView(space, standing.role, standing.invited)

    async def members(self, actor: Principal, slug: str) -> list[Member]:
        space, standing = await self._load(actor, slug)
        check(Action.LIST_MEMBERS, actor, space, standing)
        return await self.store.members(slug)

    async def _load(self, actor: Principal, slug: str) -> tuple[Space | None, Standing]:
        check_signed_in(actor)
        if not _plausible_slug(slug):
            return None, Standing()
        space = await self.store.space(slug)
        if space is None:
            return None, Standing()
        return space, await self.store.standing(slug, actor.id)

    async def _locked(self, actor: Principal, slug: str, action: Action = Action.MANAGE) -> Space:
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
        _writable(actor)
        space = Space(
            slug=check_slug(slug),
            title=check_title(title),
            description=check_description(description),
            join_policy=join_policy,
            visibility=visibility,
            home=home,
            created_by=actor.id,
            created_at=time.time(),
        )
        async with self.db.transaction():
            if not await self.store.create_space(space):
                raise SpaceError(409, "slug_taken", f"a space {slug!r} exists already")
            if not _is_operator(actor):
                await self.store.put_member(slug, actor.id, SpaceRole.ADMIN, actor.id)
            detail = {"title": title, "join_policy": join_policy.value, "visibility": visibility.value}
            await self._record(actor, "space_created", slug, address, **detail, home=home)
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
            space = await self._locked(actor, slug)
            check_changeable(space)
            changes = {k: v for k, v in changes.items() if getattr(space, k) != v}
            await self.store.update_space(slug, **changes)
            if changes:
                await self._record(
                    actor, "space_updated", slug, address, **{k: str(v) for k, v in changes.items()}
                )
        if "join_policy" in changes or "visibility" in changes:
            # Readers who were not members (open spaces) may have lost their access.
            await self._revoke(Revocation(prefix=space.prefix))
        return dataclasses.replace(space, **changes)

    async def set_archived(self, actor: Principal, slug: str, archived: bool, *, address: str = "") -> Space:
        async with self.db.transaction():
            space = await self._locked(actor, slug)
            if space.archived != archived:
                await self.store.update_space(slug, archived=archived)
                await self._record(actor, "space_archived" if archived else "space_unarchived", slug, address)
        if archived and not space.archived:
            await self._revoke(Revocation(prefix=space.prefix))
        return dataclasses.replace(space, archived=archived)

    # -- members -------------------------------------------------------------------------

    async def add_member(
        self, actor: Principal, slug: str, name: str, role: SpaceRole, *, address: str = ""
    ) -> Member:
        person = await self._person(name)
        async with self.db.transaction():
            space = await self._locked(actor, slug)
            check_changeable(space)
            if await self.store.member(slug, person) is not None:
                raise SpaceError(409, "already_member", f"{person} is a member already; set the role instead")
            await self.store.put_member(slug, person, role, actor.id)
            await self._record(actor, "member_added", slug, address, person=person, role=role.value)
        return Member(slug, person, role, actor.id, time.time())

    async def set_role(
        self, actor: Principal, slug: str, name: str, role: SpaceRole, *, address: str = ""
    ) -> Member:
        person = await self._person(name)
        async with self.db.transaction():
            space = await self._locked(actor, slug)
            check_changeable(space)
            current = await self.store.member(slug, person)
            if current is None:
                raise SpaceError(404, "member_not_found", f"{person} is not a member of this space")
            if current.role == role:
                return current
            if current.role == SpaceRole.ADMIN:
                await self._keep_an_admin(actor, slug)
            await self.store.put_member(slug, person, role, actor.id)
            await self._record(actor, "member_role_changed", slug, address, person=person,
                               role=role.value, previous=current.role.value)  # fmt: skip
        if role_rank(role) < role_rank(current.role):
            await self._revoke(Revocation(principal=person, prefix=space.prefix))
        return dataclasses.replace(current, role=role)

    async def remove_member(self, actor: Principal, slug: str, name: str, *, address: str = "") -> None:
        """Space admins and site admins remove anyone; every member may leave."""
        person = await self._person(name)
        leaving = person == actor.id
        async with self.db.transaction():
            space = await self._locked(actor, slug, Action.SEE if leaving else Action.MANAGE)
            _writable(actor)
            check_changeable(space)
            current = await self.store.member(slug, person)
            if current is None:
                raise SpaceError(404, "member_not_found", f"{person} is not a member of this space")
            if current.role == SpaceRole.ADMIN:
                await self._keep_an_admin(actor, slug)
            await self.store.delete_member(slug, person, actor.id)
            await self._record(actor, "member_removed", slug, address, person=person,
                               previous=current.role.value)  # fmt: skip
        await self._revoke(Revocation(principal=person, prefix=space.prefix))

    async def _keep_an_admin(self, actor: Principal, slug: str) -> None:
        """A space admin cannot leave the space without one; a site admin (or the CLI) can,
        as it can always step in."""
        if actor.site_role != ADMIN and await self.store.count_admins(slug) <= 1:
            raise SpaceError(409, "last_admin", "the space needs another admin first")

    # -- joining -------------------------------------------------------------------------

    async def join(self, actor: Principal, slug: str, *, message: str = "", address: str = "") -> Joined:
        message = check_description(message)
        async with self.db.transaction():
            space = await self._locked(actor, slug, Action.SEE)
            _writable(actor)
            check_changeable(space)
            if actor.site_role == GUEST:
                raise SpaceError(403, "guests_cannot_join", "guests join spaces by invitation only")
            if await self.store.member(slug, actor.id) is not None:
                raise SpaceError(409, "already_member", "you are a member already")
            if space.join_policy == JoinPolicy.INVITE:
                raise SpaceError(403, "invitation_required", "this space takes members by invitation only")
            if space.join_policy == JoinPolicy.OPEN:
                await self.store.put_member(slug, actor.id, space.default_role, actor.id)
                await self._record(
                    actor, "member_joined", slug, address, person=actor.id, role=space.default_role.value
                )
                return Joined(member=Member(slug, actor.id, space.default_role, actor.id, time.time()))
            request = JoinRequest(_new_id(), slug, actor.id, RequestStatus.PENDING, message, time.time())
            if not await self.store.add_request(request):
                raise SpaceError(409, "request_pending", "your request to join waits for a decision")
            await self._record(actor, "join_requested", slug, address, person=actor.id, request=request.id)
            return Joined(request=request)

    async def join_requests(
        self, actor: Principal, slug: str, status: RequestStatus | None = RequestStatus.PENDING
    ) -> list[JoinRequest]:
        space, standing = await self._load(actor, slug)
        check(Action.MANAGE, actor, space, standing)
        return await self.store.requests(slug, status)

    async def my_join_requests(self, actor: Principal) -> list[JoinRequest]:
        check_signed_in(actor)
        return await self.store.requests_of(actor.id)

    async def decide_join_request(
        self,
        actor: Principal,
        slug: str,
        request_id: str,
        approve: bool,
        *,
        role: SpaceRole | None = None,
        address: str = "",
    ) -> JoinRequest:
        """A pending request may be decided even after the space's policy changed."""
        async with self.db.transaction():
            space = await self._locked(actor, slug)
            check_changeable(space)
            request = await self.store.request(request_id)
            if request is None or request.space != slug:
                raise SpaceError(404, "join_request_not_found", "no such join request")
            if request.status != RequestStatus.PENDING:
                raise SpaceError(409, "already_decided", f"the request was {request.status.value} already")
            status = RequestStatus.APPROVED if approve else RequestStatus.DECLINED
            await self.store.decide_request(request_id, status, actor.id)
            given = role or space.default_role
            if approve and await self.store.member(slug, request.person) is None:
                await self.store.put_member(slug, request.person, given, actor.id)
            action = "join_approved" if approve else "join_declined"
            detail = {"request": request_id, "person": request.person} | (
                {"role": given.value} if approve else {}
            )
            await self._record(actor, action, slug, address, **detail)
        return dataclasses.replace(request, status=status, decided_by=actor.id, decided_at=time.time())

    # -- invitations ---------------------------------------------------------------------

    async def invite(
        self, actor: Principal, slug: str, name: str, role: SpaceRole, *, address: str = ""
    ) -> Invitation:
        person = await self._person(name)
        async with self.db.transaction():
            space = await self._locked(actor, slug)
            check_changeable(space)
            if await self.store.member(slug, person) is not None:
                raise SpaceError(409, "already_member", f"{person} is a member already")
            invitation = Invitation(
                _new_id(), slug, person, role, InvitationStatus.PENDING, actor.id, time.time()
            )
            if not await self.store.add_invitation(invitation):
                raise SpaceError(409, "invitation_pending", f"{person} has an invitation already")
            await self._record(actor, "invitation_created", slug, address,
                               invitation=invitation.id, person=person, role=role.value)  # fmt: skip
        return invitation

    async def invitations(
        self, actor: Principal, slug: str, status: InvitationStatus | None = InvitationStatus.PENDING
    ) -> list[Invitation]:
        space, standing = await self._load(actor, slug)
        check(Action.MANAGE, actor, space, standing)
        return await self.store.invitations(slug, status)

    async def my_invitations(self, actor: Principal) -> list[Invitation]:
        check_signed_in(actor)
        return await self.store.invitations_of(actor.id)

    async def answer_invitation(
        self, actor: Principal, invitation_id: str, accept: bool, *, address: str = ""
    ) -> Invitation:
        """Only the invited person answers; anyone else is told there is no such invitation."""
        check_signed_in(actor)
        _writable(actor)
        async with self.db.transaction():
            invitation = await self.store.invitation(invitation_id) if _plausible_id(invitation_id) else None
            if invitation is None or invitation.person != actor.id:
                raise SpaceError(404, "invitation_not_found", "no such invitation")
            space = await self.store.lock_space(invitation.space)
            assert space is not None  # spaces are never deleted
            if invitation.status != InvitationStatus.PENDING:
                raise SpaceError(
                    409, "already_decided", f"the invitation was {invitation.status.value} already"
                )
            check_changeable(space)
            status = InvitationStatus.ACCEPTED if accept else InvitationStatus.DECLINED
            await self.store.decide_invitation(invitation_id, status)
            if accept and await self.store.member(space.slug, actor.id) is None:
                await self.store.put_member(space.slug, actor.id, invitation.role, invitation.invited_by)
            action = "invitation_accepted" if accept else "invitation_declined"
            await self._record(actor, action, space.slug, address, invitation=invitation_id,
                               person=actor.id, role=invitation.role.value)  # fmt: skip
        return dataclasses.replace(invitation, status=status, decided_at=time.time())

    async def withdraw_invitation(
        self, actor: Principal, slug: str, invitation_id: str, *, address: str = ""
    ) -> Invitation:
        async with self.db.transaction():
            await self._locked(actor, slug)
            invitation = await self.store.invitation(invitation_id) if _plausible_id(invitation_id) else None
            if invitation is None or invitation.space != slug:
                raise SpaceError(404, "invitation_not_found", "no such invitation")
            if invitation.status != InvitationStatus.PENDING:
                raise SpaceError(
                    409, "already_decided", f"the invitation was {invitation.status.value} already"
                )
            await self.store.decide_invitation(invitation_id, InvitationStatus.WITHDRAWN)
            await self._record(actor, "invitation_withdrawn", slug, address, invitation=invitation_id,
                               person=invitation.person)  # fmt: skip
        return dataclasses.replace(invitation, status=InvitationStatus.WITHDRAWN, decided_at=time.time())

    # -- helpers -------------------------------------------------------------------------

    async def _person(self, name: str) -> str:
        person = await self._people.person_id(name)
        if person is None:
            raise SpaceError(404, "person_not_found", "no such person on this site")
        return person

    async def _record(self, actor: Principal, action: str, target: str, address: str, **detail: Any) -> None:
        """In the caller's transaction: the audit entry commits (or not) with the change. The
        target is the space, or "space/person" when the event is about someone."""
        if "person" in detail:
            target = f"{target}/{detail['person']}"
        await self._audit.record(action, actor=actor.id, target=target, address=address, detail=detail)

    async def _revoke(self, revocation: Revocation) -> None:
        try:
            await self._revoker.record(revocation)
        except Exception:
            # The change is committed; the revocation feed (written first by the revoker)
            # still reaches the nodes. Never report a committed change as failed.
            log.exception("revocation %r could not be published", revocation)


def check_signed_in(actor: Principal) -> None:
    if actor.anonymous:
        raise SpaceError(401, "unauthenticated", "sign in first")


def _writable(actor: Principal) -> None:
    if actor.scope == "read":
        raise SpaceError(403, "read_only_token", "this token may only read")


# The CLI acts as the operator: a site admin with no account (the id has no "@site", so it
# is nobody's), which joins no space it creates.
OPERATOR = Principal("operator", "operator", ADMIN)


def _is_operator(actor: Principal) -> bool:
    return actor.id == OPERATOR.id


def _plausible_slug(slug: str) -> bool:
    try:
        check_slug(slug)
    except SpaceError:
        return False
    return True


def _plausible_id(value: str) -> bool:
    return 0 < len(value) <= 64 and value.isascii() and value.isalnum()
