"""Joining a space: at once (open spaces), by a request a space admin approves or declines
(on request), or by an invitation the invited person accepts or declines (any policy).

A decided request or invitation stays in its table: the requester is told from it (its
own list shows the decision; a later notifications step shows it too). A pending request
may still be decided after the space's policy changed.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..auth.ports import Principal
from .space_rules import GUEST, Action, check, check_changeable, check_signed_in, check_writable
from .spaces import (
    Invitation,
    InvitationStatus,
    JoinPolicy,
    JoinRequest,
    Member,
    RequestStatus,
    SpaceError,
    SpaceRole,
    check_description,
)

if TYPE_CHECKING:
    from .space_service import SpaceService

__all__ = ["Admissions", "Joined"]


@dataclass(frozen=True, slots=True)
class Joined:
    """What `join` did: a membership (open spaces) or a pending request (on request)."""

    member: Member | None = None
    request: JoinRequest | None = None


def _new_id() -> str:
    return secrets.token_hex(8)


class Admissions:
    def __init__(self, spaces: SpaceService) -> None:
        self._spaces = spaces
        self._store = spaces.store
        self._db = spaces.db

    # -- joining -------------------------------------------------------------------------

    async def join(self, actor: Principal, slug: str, *, message: str = "", address: str = "") -> Joined:
        message = check_description(message)
        async with self._db.transaction():
            space = await self._spaces.locked(actor, slug, Action.SEE)
            check_writable(actor)
            check_changeable(space)
            if actor.site_role == GUEST:
                raise SpaceError(403, "guests_cannot_join", "guests join spaces by invitation only")
            if await self._store.member(slug, actor.id) is not None:
                raise SpaceError(409, "already_member", "you are a member already")
            if space.join_policy == JoinPolicy.INVITE:
                raise SpaceError(403, "invitation_required", "this space takes members by invitation only")
            if space.join_policy == JoinPolicy.OPEN:
                await self._store.put_member(slug, actor.id, space.default_role, actor.id)
                await self._spaces.record(
                    actor, "member_joined", slug, address, person=actor.id, role=space.default_role.value
                )
                return Joined(member=Member(slug, actor.id, space.default_role, actor.id, time.time()))
            request = JoinRequest(_new_id(), slug, actor.id, RequestStatus.PENDING, message, time.time())
            if not await self._store.add_request(request):
                raise SpaceError(409, "request_pending", "your request to join waits for a decision")
            await self._spaces.record(
                actor, "join_requested", slug, address, person=actor.id, request=request.id
            )
            return Joined(request=request)

    async def join_requests(
        self, actor: Principal, slug: str, status: RequestStatus | None = RequestStatus.PENDING
    ) -> list[JoinRequest]:
        space, standing = await self._spaces.load(actor, slug)
        check(Action.MANAGE, actor, space, standing)
        return await self._store.requests(slug, status)

    async def my_join_requests(self, actor: Principal) -> list[JoinRequest]:
        check_signed_in(actor)
        return await self._store.requests_of(actor.id)

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
        async with self._db.transaction():
            space = await self._spaces.locked(actor, slug)
            check_changeable(space)
            request = await self._store.request(request_id) if _plausible_id(request_id) else None
            if request is None or request.space != slug:
                raise SpaceError(404, "join_request_not_found", "no such join request")
            if request.status != RequestStatus.PENDING:
                raise SpaceError(409, "already_decided", f"the request was {request.status.value} already")
            status = RequestStatus.APPROVED if approve else RequestStatus.DECLINED
            await self._store.decide_request(request_id, status, actor.id)
            given = role or space.default_role
            if approve and await self._store.member(slug, request.person) is None:
                await self._store.put_member(slug, request.person, given, actor.id)
            action = "join_approved" if approve else "join_declined"
            detail = {"request": request_id, "person": request.person} | (
                {"role": given.value} if approve else {}
            )
            await self._spaces.record(actor, action, slug, address, **detail)
        return dataclasses.replace(request, status=status, decided_by=actor.id, decided_at=time.time())

    # -- invitations ---------------------------------------------------------------------

    async def invite(
        self, actor: Principal, slug: str, name: str, role: SpaceRole, *, address: str = ""
    ) -> Invitation:
        async with self._db.transaction():
            space = await self._spaces.locked(actor, slug)
            check_changeable(space)
            person = await self._spaces.person(name, slug)
            if await self._store.member(slug, person) is not None:
                raise SpaceError(409, "already_member", f"{person} is a member already")
            invitation = Invitation(
                _new_id(), slug, person, role, InvitationStatus.PENDING, actor.id, time.time()
            )
            if not await self._store.add_invitation(invitation):
                raise SpaceError(409, "invitation_pending", f"{person} has an invitation already")
            await self._spaces.record(actor, "invitation_created", slug, address,
                               invitation=invitation.id, person=person, role=role.value)  # fmt: skip
        return invitation

    async def invitations(
        self, actor: Principal, slug: str, status: InvitationStatus | None = InvitationStatus.PENDING
    ) -> list[Invitation]:
        space, standing = await self._spaces.load(actor, slug)
        check(Action.MANAGE, actor, space, standing)
        return await self._store.invitations(slug, status)

    async def my_invitations(self, actor: Principal) -> list[Invitation]:
        check_signed_in(actor)
        return await self._store.invitations_of(actor.id)

    async def answer_invitation(
        self, actor: Principal, invitation_id: str, accept: bool, *, address: str = ""
    ) -> Invitation:
        """Only the invited person answers; anyone else is told there is no such invitation."""
        check_signed_in(actor)
        check_writable(actor)
        async with self._db.transaction():
            invitation = await self._store.invitation(invitation_id) if _plausible_id(invitation_id) else None
            if invitation is None or invitation.person != actor.id:
                raise SpaceError(404, "invitation_not_found", "no such invitation")
            space = await self._store.lock_space(invitation.space)
            assert space is not None  # spaces are never deleted
            if invitation.status != InvitationStatus.PENDING:
                raise SpaceError(
                    409, "already_decided", f"the invitation was {invitation.status.value} already"
                )
            check_changeable(space)
            status = InvitationStatus.ACCEPTED if accept else InvitationStatus.DECLINED
            await self._store.decide_invitation(invitation_id, status)
            if accept and await self._store.member(space.slug, actor.id) is None:
                await self._store.put_member(space.slug, actor.id, invitation.role, invitation.invited_by)
            action = "invitation_accepted" if accept else "invitation_declined"
            await self._spaces.record(actor, action, space.slug, address, invitation=invitation_id,
                               person=actor.id, role=invitation.role.value)  # fmt: skip
        return dataclasses.replace(invitation, status=status, decided_at=time.time())

    async def withdraw_invitation(
        self, actor: Principal, slug: str, invitation_id: str, *, address: str = ""
    ) -> Invitation:
        async with self._db.transaction():
            await self._spaces.locked(actor, slug)
            invitation = await self._store.invitation(invitation_id) if _plausible_id(invitation_id) else None
            if invitation is None or invitation.space != slug:
                raise SpaceError(404, "invitation_not_found", "no such invitation")
            if invitation.status != InvitationStatus.PENDING:
                raise SpaceError(
                    409, "already_decided", f"the invitation was {invitation.status.value} already"
                )
            await self._store.decide_invitation(invitation_id, InvitationStatus.WITHDRAWN)
            await self._spaces.record(actor, "invitation_withdrawn", slug, address, invitation=invitation_id,
                               person=invitation.person)  # fmt: skip
        return dataclasses.replace(invitation, status=InvitationStatus.WITHDRAWN, decided_at=time.time())

    async def _invitation(self, invitation_id: str) -> Invitation | None:
        return await self._store.invitation(invitation_id) if _plausible_id(invitation_id) else None


def _plausible_id(value: str) -> bool:
    return 0 < len(value) <= 64 and value.isascii() and value.isalnum()
