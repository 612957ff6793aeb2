"""REST: spaces, their members, join requests and invitations (under /api/v1).

Thin: each route validates its body with pydantic, calls `SpaceService` (which decides with
the same rules as the WebSocket authorizer) and shapes the answer. Refusals are the
service's `SpaceError`s, rendered by the API's error handler as
`{"error": {"code", "message"}}`; a space the caller may not see answers exactly as one
that does not exist (404 `space_not_found`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ..auth.ports import Principal
from ..domain.space_service import SpaceService, SpaceView
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

__all__ = ["spaces_router"]

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


RequestFilter = Literal["pending", "approved", "declined", "all"]
InvitationFilter = Literal["pending", "accepted", "declined", "withdrawn", "all"]


def spaces_router(
    principal: Callable[..., Any],
    service: Callable[..., Any],
    address: Callable[[Request], str],
) -> APIRouter:
    """The routes, given the API's dependencies: the caller's principal (401 without
    credentials), the space service, and the caller's address for the audit log."""
    router = APIRouter(tags=["spaces"])
    Caller = Annotated[Principal, Depends(principal)]
    Spaces = Annotated[SpaceService, Depends(service)]

    @router.get("/spaces", summary="The spaces the caller may see")
    async def list_spaces(caller: Caller, spaces: Spaces) -> SpaceList:
        return SpaceList(spaces=[_space(v) for v in await spaces.list_spaces(caller)])

    @router.post("/spaces", status_code=201, summary="Create a space (site admins, community managers)")
    async def create_space(body: SpaceCreate, request: Request, caller: Caller, spaces: Spaces) -> SpaceOut:
        await spaces.create(
            caller, body.slug, body.title, description=body.description, join_policy=body.join_policy,
            visibility=body.visibility, home=body.home, address=address(request),
        )  # fmt: skip
        return _space(await spaces.get(caller, body.slug))

    @router.get("/spaces/{slug}", summary="One space")
    async def get_space(slug: str, caller: Caller, spaces: Spaces) -> SpaceOut:
        return _space(await spaces.get(caller, slug))

    @router.patch("/spaces/{slug}", summary="Rename, describe, change the join policy or visibility")
    async def patch_space(
        slug: str, body: SpacePatch, request: Request, caller: Caller, spaces: Spaces
    ) -> SpaceOut:
        await spaces.update(
            caller, slug, title=body.title, description=body.description, join_policy=body.join_policy,
            visibility=body.visibility, default_role=body.default_role, address=address(request),
        )  # fmt: skip
        return _space(await spaces.get(caller, slug))

    @router.post("/spaces/{slug}/archive", summary="Archive: read-only for members, hidden from others")
    async def archive(slug: str, request: Request, caller: Caller, spaces: Spaces) -> SpaceOut:
        await spaces.set_archived(caller, slug, True, address=address(request))
        return _space(await spaces.get(caller, slug))

    @router.post("/spaces/{slug}/unarchive", summary="Unarchive")
    async def unarchive(slug: str, request: Request, caller: Caller, spaces: Spaces) -> SpaceOut:
        await spaces.set_archived(caller, slug, False, address=address(request))
        return _space(await spaces.get(caller, slug))

    @router.get("/spaces/{slug}/members", summary="The members of a space")
    async def list_members(slug: str, caller: Caller, spaces: Spaces) -> MemberList:
        return MemberList(members=[_member(m) for m in await spaces.members(caller, slug)])

    @router.post("/spaces/{slug}/members", status_code=201, summary="Add a member (space admins)")
    async def add_member(
        slug: str, body: MemberIn, request: Request, caller: Caller, spaces: Spaces
    ) -> MemberOut:
        member = await spaces.add_member(caller, slug, body.person, body.role, address=address(request))
        return _member(member)

    @router.put("/spaces/{slug}/members/{person}", summary="Set a member's role (space admins)")
    async def set_role(
        slug: str, person: str, body: RoleIn, request: Request, caller: Caller, spaces: Spaces
    ) -> MemberOut:
        member = await spaces.set_role(caller, slug, person, body.role, address=address(request))
        return _member(member)

    @router.delete("/spaces/{slug}/members/{person}", status_code=204, summary="Remove a member, or leave")
    async def remove_member(
        slug: str, person: str, request: Request, caller: Caller, spaces: Spaces
    ) -> Response:
        await spaces.remove_member(caller, slug, person, address=address(request))
        return Response(status_code=204)

    @router.post(
        "/spaces/{slug}/join",
        summary="Join an open space at once, or ask to join a space on request (202)",
        responses={202: {"model": JoinOut, "description": "a join request was created"}},
    )
    async def join(
        slug: str,
        request: Request,
        response: Response,
        caller: Caller,
        spaces: Spaces,
        body: JoinIn | None = None,
    ) -> JoinOut:
        joined = await spaces.admissions.join(
            caller, slug, message=body.message if body else "", address=address(request)
        )
        if joined.request is not None:
            response.status_code = 202
            return JoinOut(join_request=_request(joined.request))
        assert joined.member is not None
        return JoinOut(member=_member(joined.member))

    @router.get("/spaces/{slug}/join-requests", summary="Join requests of a space (space admins)")
    async def list_join_requests(
        slug: str, caller: Caller, spaces: Spaces, status: Annotated[RequestFilter, Query()] = "pending"
    ) -> JoinRequestList:
        wanted = None if status == "all" else RequestStatus(status)
        requests = await spaces.admissions.join_requests(caller, slug, wanted)
        return JoinRequestList(join_requests=[_request(r) for r in requests])

    @router.post("/spaces/{slug}/join-requests/{request_id}/approve", summary="Approve a join request")
    async def approve(
        slug: str,
        request_id: str,
        request: Request,
        caller: Caller,
        spaces: Spaces,
        body: ApproveIn | None = None,
    ) -> JoinRequestOut:
        role = body.role if body else None
        decided = await spaces.admissions.decide_join_request(
            caller, slug, request_id, True, role=role, address=address(request)
        )
        return _request(decided)

    @router.post("/spaces/{slug}/join-requests/{request_id}/decline", summary="Decline a join request")
    async def decline(
        slug: str, request_id: str, request: Request, caller: Caller, spaces: Spaces
    ) -> JoinRequestOut:
        decided = await spaces.admissions.decide_join_request(
            caller, slug, request_id, False, address=address(request)
        )
        return _request(decided)

    @router.get("/join-requests", summary="The caller's own join requests, with their decisions")
    async def my_join_requests(caller: Caller, spaces: Spaces) -> JoinRequestList:
        return JoinRequestList(
            join_requests=[_request(r) for r in await spaces.admissions.my_join_requests(caller)]
        )

    @router.get("/spaces/{slug}/invitations", summary="Invitations of a space (space admins)")
    async def list_invitations(
        slug: str, caller: Caller, spaces: Spaces, status: Annotated[InvitationFilter, Query()] = "pending"
    ) -> InvitationList:
        wanted = None if status == "all" else InvitationStatus(status)
        invitations = await spaces.admissions.invitations(caller, slug, wanted)
        return InvitationList(invitations=[_invitation(i) for i in invitations])

    @router.post("/spaces/{slug}/invitations", status_code=201, summary="Invite a person (space admins)")
    async def invite(
        slug: str, body: InvitationIn, request: Request, caller: Caller, spaces: Spaces
    ) -> InvitationOut:
        invitation = await spaces.admissions.invite(
            caller, slug, body.person, body.role, address=address(request)
        )
        return _invitation(invitation)

    @router.delete("/spaces/{slug}/invitations/{invitation_id}", summary="Withdraw an invitation")
    async def withdraw(
        slug: str, invitation_id: str, request: Request, caller: Caller, spaces: Spaces
    ) -> InvitationOut:
        invitation = await spaces.admissions.withdraw_invitation(
            caller, slug, invitation_id, address=address(request)
        )
        return _invitation(invitation)

    @router.get("/invitations", summary="Invitations addressed to the caller")
    async def my_invitations(caller: Caller, spaces: Spaces) -> InvitationList:
        return InvitationList(
            invitations=[_invitation(i) for i in await spaces.admissions.my_invitations(caller)]
        )

    @router.post("/invitations/{invitation_id}/accept", summary="Accept an invitation")
    async def accept(invitation_id: str, request: Request, caller: Caller, spaces: Spaces) -> InvitationOut:
        answered = await spaces.admissions.answer_invitation(
            caller, invitation_id, True, address=address(request)
        )
        return _invitation(answered)

    @router.post("/invitations/{invitation_id}/decline", summary="Decline an invitation")
    async def decline_invitation(
        invitation_id: str, request: Request, caller: Caller, spaces: Spaces
    ) -> InvitationOut:
        answered = await spaces.admissions.answer_invitation(
            caller, invitation_id, False, address=address(request)
        )
        return _invitation(answered)

    return router
