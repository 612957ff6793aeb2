"""REST: spaces, their members, join requests and invitations (under /api/v1).

Thin: each route validates its body with pydantic, calls `SpaceService` (which decides with
the same rules as the WebSocket authorizer) and shapes the answer. Refusals are the
service's `SpaceError`s, rendered by the API's error handler as
`{"error": {"code", "message"}}`; a space the caller may not see answers exactly as one
that does not exist (404 `space_not_found`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ..auth.authenticator import Identity
from ..auth.ports import Principal
from ..domain.space_service import SpaceView
from ..domain.spaces import (
    MAX_DESCRIPTION,
    MAX_SLUG,
    MAX_TITLE,
    Invitation,
    InvitationStatus,
    JoinPolicy,
    JoinRequest,
    Member,
    RequestStatus,
    SpaceRole,
    Visibility,
)
from .context import ApiContext, address_of
from .errors import errors

__all__ = ["router"]

_PERSON = Field(min_length=1, max_length=300, description='"name" (this site) or "name@site"')


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpaceOut(BaseModel):
    slug: str
    title: str
    description: str
    join_policy: JoinPolicy
    visibility: Visibility
    home: str = Field(description="the site that decides the membership; empty: this site")
    archived: bool
    default_role: SpaceRole = Field(description="given on an open join or an approved request")
    created_at: float
    role: SpaceRole | None = Field(description="the caller's role in the space; null: not a member")
    invited: bool = Field(description="an invitation waits for the caller")


class SpaceList(BaseModel):
    spaces: list[SpaceOut]


class SpaceCreate(_Body):
    slug: str = Field(max_length=MAX_SLUG, description="fixed: lower-case letters, digits and inner '-'")
    title: str = Field(max_length=MAX_TITLE)
    description: str = Field("", max_length=MAX_DESCRIPTION)
    join_policy: JoinPolicy = JoinPolicy.OPEN
    visibility: Visibility = Visibility.LISTED
    home: str = Field("", max_length=MAX_SLUG)


class SpacePatch(_Body):
    title: str | None = Field(None, max_length=MAX_TITLE)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)
    join_policy: JoinPolicy | None = None
    visibility: Visibility | None = None
    default_role: SpaceRole | None = None


class MemberOut(BaseModel):
    person: str
    role: SpaceRole
    added_by: str
    added_at: float


class MemberList(BaseModel):
    members: list[MemberOut]


class MemberIn(_Body):
    person: str = _PERSON
    role: SpaceRole


class RoleIn(_Body):
    role: SpaceRole


class JoinIn(_Body):
    message: str = Field("", max_length=MAX_DESCRIPTION)


class JoinRequestOut(BaseModel):
    id: str
    space: str
    person: str
    status: RequestStatus
    message: str
    created_at: float
    decided_by: str
    decided_at: float


class JoinRequestList(BaseModel):
    join_requests: list[JoinRequestOut]


class JoinOut(BaseModel):
    """An open space: `member`; a space on request: `join_request` (status 202)."""

    member: MemberOut | None = None
    join_request: JoinRequestOut | None = None


class ApproveIn(_Body):
    role: SpaceRole | None = Field(None, description="default: the space's default_role")


class InvitationIn(_Body):
    person: str = _PERSON
    role: SpaceRole = SpaceRole.EDITOR


class InvitationOut(BaseModel):
    id: str
    space: str
    person: str
    role: SpaceRole
    status: InvitationStatus
    invited_by: str
    created_at: float
    decided_at: float


class InvitationList(BaseModel):
    invitations: list[InvitationOut]


def _space(view: SpaceView) -> SpaceOut:
    s = view.space
    return SpaceOut(
        slug=s.slug, title=s.title, description=s.description, join_policy=s.join_policy,
        visibility=s.visibility, home=s.home, archived=s.archived, default_role=s.default_role,
        created_at=s.created_at, role=view.role, invited=view.invited,
    )  # fmt: skip


def _member(m: Member) -> MemberOut:
    return MemberOut(person=m.person, role=m.role, added_by=m.added_by, added_at=m.added_at)


def _request(r: JoinRequest) -> JoinRequestOut:
    return JoinRequestOut(
        id=r.id, space=r.space, person=r.person, status=r.status, message=r.message,
        created_at=r.created_at, decided_by=r.decided_by, decided_at=r.decided_at,
    )  # fmt: skip


def _invitation(i: Invitation) -> InvitationOut:
    return InvitationOut(
        id=i.id, space=i.space, person=i.person, role=i.role, status=i.status,
        invited_by=i.invited_by, created_at=i.created_at, decided_at=i.decided_at,
    )  # fmt: skip


_JOIN_RESPONSES = errors(401, 403, 404, 409, 422) | {
    202: {"model": JoinOut, "description": "a join request was created"}
}

RequestFilter = Literal["pending", "approved", "declined", "all"]
InvitationFilter = Literal["pending", "accepted", "declined", "withdrawn", "all"]


def router(ctx: ApiContext) -> APIRouter:
    """The routes; every one answers 401 without credentials (`ctx.person`)."""
    api = APIRouter(tags=["spaces"])
    service = ctx.spaces

    async def principal(identity: Identity = Depends(ctx.person)) -> Principal:
        return identity.principal

    me = Depends(principal)

    @api.get("/spaces", summary="The spaces the caller may see", responses=errors(401))
    async def list_spaces(caller: Principal = me) -> SpaceList:
        return SpaceList(spaces=[_space(v) for v in await service.list_spaces(caller)])

    @api.post(
        "/spaces",
        status_code=201,
        summary="Create a space (site admins, community managers)",
        responses=errors(401, 403, 409, 422),
    )
    async def create_space(body: SpaceCreate, request: Request, caller: Principal = me) -> SpaceOut:
        await service.create(
            caller, body.slug, body.title, description=body.description, join_policy=body.join_policy,
            visibility=body.visibility, home=body.home, address=address_of(request),
        )  # fmt: skip
        return _space(await service.get(caller, body.slug))

    @api.get("/spaces/{slug}", summary="One space", responses=errors(401, 404, 422))
    async def get_space(slug: str, caller: Principal = me) -> SpaceOut:
        return _space(await service.get(caller, slug))

    @api.patch(
        "/spaces/{slug}",
        summary="Rename, describe, change the join policy or visibility",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def patch_space(slug: str, body: SpacePatch, request: Request, caller: Principal = me) -> SpaceOut:
        await service.update(
            caller, slug, title=body.title, description=body.description, join_policy=body.join_policy,
            visibility=body.visibility, default_role=body.default_role, address=address_of(request),
        )  # fmt: skip
        return _space(await service.get(caller, slug))

    @api.post(
        "/spaces/{slug}/archive",
        summary="Archive: read-only for its members, closed to others",
        responses=errors(401, 403, 404, 422),
    )
    async def archive(slug: str, request: Request, caller: Principal = me) -> SpaceOut:
        await service.set_archived(caller, slug, True, address=address_of(request))
        return _space(await service.get(caller, slug))

    @api.post("/spaces/{slug}/unarchive", summary="Unarchive", responses=errors(401, 403, 404, 422))
    async def unarchive(slug: str, request: Request, caller: Principal = me) -> SpaceOut:
        await service.set_archived(caller, slug, False, address=address_of(request))
        return _space(await service.get(caller, slug))

    @api.get("/spaces/{slug}/members", summary="The members of a space", responses=errors(401, 403, 404, 422))
    async def list_members(slug: str, caller: Principal = me) -> MemberList:
        return MemberList(members=[_member(m) for m in await service.members(caller, slug)])

    @api.post(
        "/spaces/{slug}/members",
        status_code=201,
        summary="Add a member (space admins)",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def add_member(slug: str, body: MemberIn, request: Request, caller: Principal = me) -> MemberOut:
        member = await service.add_member(caller, slug, body.person, body.role, address=address_of(request))
        return _member(member)

    @api.put(
        "/spaces/{slug}/members/{person}",
        summary="Set a member's role (space admins)",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def set_role(
        slug: str, person: str, body: RoleIn, request: Request, caller: Principal = me
    ) -> MemberOut:
        member = await service.set_role(caller, slug, person, body.role, address=address_of(request))
        return _member(member)

    @api.delete(
        "/spaces/{slug}/members/{person}",
        status_code=204,
        summary="Remove a member, or leave",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def remove_member(slug: str, person: str, request: Request, caller: Principal = me) -> Response:
        await service.remove_member(caller, slug, person, address=address_of(request))
        return Response(status_code=204)

    @api.post(
        "/spaces/{slug}/join",
        summary="Join an open space at once, or ask to join a space on request (202)",
        responses=_JOIN_RESPONSES,
    )
    async def join(
        slug: str,
        request: Request,
        response: Response,
        caller: Principal = me,
        body: JoinIn | None = None,
    ) -> JoinOut:
        joined = await service.admissions.join(
            caller, slug, message=body.message if body else "", address=address_of(request)
        )
        if joined.request is not None:
            response.status_code = 202
            return JoinOut(join_request=_request(joined.request))
        assert joined.member is not None
        return JoinOut(member=_member(joined.member))

    @api.get(
        "/spaces/{slug}/join-requests",
        summary="Join requests of a space (space admins)",
        responses=errors(401, 403, 404, 422),
    )
    async def list_join_requests(
        slug: str, caller: Principal = me, status: Annotated[RequestFilter, Query()] = "pending"
    ) -> JoinRequestList:
        wanted = None if status == "all" else RequestStatus(status)
        requests = await service.admissions.join_requests(caller, slug, wanted)
        return JoinRequestList(join_requests=[_request(r) for r in requests])

    @api.post(
        "/spaces/{slug}/join-requests/{request_id}/approve",
        summary="Approve a join request",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def approve(
        slug: str,
        request_id: str,
        request: Request,
        caller: Principal = me,
        body: ApproveIn | None = None,
    ) -> JoinRequestOut:
        role = body.role if body else None
        decided = await service.admissions.decide_join_request(
            caller, slug, request_id, True, role=role, address=address_of(request)
        )
        return _request(decided)

    @api.post(
        "/spaces/{slug}/join-requests/{request_id}/decline",
        summary="Decline a join request",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def decline(slug: str, request_id: str, request: Request, caller: Principal = me) -> JoinRequestOut:
        decided = await service.admissions.decide_join_request(
            caller, slug, request_id, False, address=address_of(request)
        )
        return _request(decided)

    @api.get(
        "/join-requests",
        summary="The caller's own join requests, with their decisions",
        responses=errors(401),
    )
    async def my_join_requests(caller: Principal = me) -> JoinRequestList:
        return JoinRequestList(
            join_requests=[_request(r) for r in await service.admissions.my_join_requests(caller)]
        )

    @api.get(
        "/spaces/{slug}/invitations",
        summary="Invitations of a space (space admins)",
        responses=errors(401, 403, 404, 422),
    )
    async def list_invitations(
        slug: str, caller: Principal = me, status: Annotated[InvitationFilter, Query()] = "pending"
    ) -> InvitationList:
        wanted = None if status == "all" else InvitationStatus(status)
        invitations = await service.admissions.invitations(caller, slug, wanted)
        return InvitationList(invitations=[_invitation(i) for i in invitations])

    @api.post(
        "/spaces/{slug}/invitations",
        status_code=201,
        summary="Invite a person (space admins)",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def invite(
        slug: str, body: InvitationIn, request: Request, caller: Principal = me
    ) -> InvitationOut:
        invitation = await service.admissions.invite(
            caller, slug, body.person, body.role, address=address_of(request)
        )
        return _invitation(invitation)

    @api.delete(
        "/spaces/{slug}/invitations/{invitation_id}",
        summary="Withdraw an invitation",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def withdraw(
        slug: str, invitation_id: str, request: Request, caller: Principal = me
    ) -> InvitationOut:
        invitation = await service.admissions.withdraw_invitation(
            caller, slug, invitation_id, address=address_of(request)
        )
        return _invitation(invitation)

    @api.get("/invitations", summary="Invitations addressed to the caller", responses=errors(401))
    async def my_invitations(caller: Principal = me) -> InvitationList:
        return InvitationList(
            invitations=[_invitation(i) for i in await service.admissions.my_invitations(caller)]
        )

    @api.post(
        "/invitations/{invitation_id}/accept",
        summary="Accept an invitation",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def accept(invitation_id: str, request: Request, caller: Principal = me) -> InvitationOut:
        answered = await service.admissions.answer_invitation(
            caller, invitation_id, True, address=address_of(request)
        )
        return _invitation(answered)

    @api.post(
        "/invitations/{invitation_id}/decline",
        summary="Decline an invitation",
        responses=errors(401, 403, 404, 409, 422),
    )
    async def decline_invitation(
        invitation_id: str, request: Request, caller: Principal = me
    ) -> InvitationOut:
        answered = await service.admissions.answer_invitation(
            caller, invitation_id, False, address=address_of(request)
        )
        return _invitation(answered)

    return api
