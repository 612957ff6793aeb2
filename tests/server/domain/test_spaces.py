"""The space service and the authorizer on SQLite and PostgreSQL: membership, roles, join
policies, invitations, archives, the audit events and the revocations they ask for, and
that a refused operation changes nothing in the tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from protocol.backplane import Revocation
from server.auth.authorizer import SpaceAuthorizer
from server.auth.ports import ANONYMOUS, Grant, Principal
from server.db import Database
from server.domain.page_store import PageStore
from server.domain.space_service import OPERATOR, SpaceService
from server.domain.spaces import (
    InvitationStatus,
    JoinPolicy,
    RequestStatus,
    SpaceError,
    SpaceRole,
    Visibility,
)

ADMIN = Principal("root@here", "root", "admin")
CM = Principal("cm@here", "cm", "community-manager")
ANN = Principal("ann@here", "ann", "member")
BOB = Principal("bob@here", "bob", "member")
CAT = Principal("cat@here", "cat", "member")
GUS = Principal("gus@here", "gus", "guest")
PEOPLE = {p.name: p.id for p in (ADMIN, CM, ANN, BOB, CAT, GUS)}


class FakePeople:
    async def person_id(self, name: str) -> str | None:
        return PEOPLE.get(name.removesuffix("@here"))

    def local_name(self, person_id: str) -> str | None:
        name, _, site = person_id.partition("@")
        return name if site == "here" else None


class Recorder:
    """The audit log and the revocation feed, as a service sees them: what it recorded."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, dict[str, Any]]] = []
        self.revocations: list[Revocation] = []
        self.audit = _Audit(self.events)
        self.feed = _Feed(self.revocations)

    def actions(self) -> list[str]:
        return [event[1] for event in self.events]


class _Audit:
    def __init__(self, events: list[tuple[str, str, str, dict[str, Any]]]) -> None:
        self.events = events

    async def record(
        self,
        action: str,
        *,
        actor: str = "",
        target: str = "",
        address: str = "",
        site: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        self.events.append((actor, action, target, dict(detail or {})))


class _Feed:
    def __init__(self, revocations: list[Revocation]) -> None:
        self.revocations = revocations

    async def record(self, revocation: Revocation) -> None:
        self.revocations.append(revocation)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def spaces(database: Database, recorder: Recorder) -> SpaceService:
    return SpaceService(database, FakePeople(), recorder.audit, recorder.feed)


async def code_of(operation: Any) -> str:
    with pytest.raises(SpaceError) as refused:
        await operation
    return refused.value.code


async def tables(db: Database) -> dict[str, list[dict[str, Any]]]:
    names = ["spaces", "space_members", "space_member_log", "space_join_requests", "space_invitations"]
    return {name: await db.fetch(f"SELECT * FROM {name} ORDER BY 1, 2") for name in names}


async def test_create_makes_the_creator_admin_and_the_cli_makes_no_member(
    spaces: SpaceService, recorder: Recorder
) -> None:
    await spaces.create(CM, "eng", "Engineering", description="we build")
    assert [(m.person, m.role) for m in await spaces.members(CM, "eng")] == [("cm@here", SpaceRole.ADMIN)]
    await spaces.create(OPERATOR, "ops", "Operations", join_policy=JoinPolicy.INVITE, home="berlin")
    view = await spaces.get(ADMIN, "ops")
    assert view.space.home == "berlin" and view.space.join_policy == JoinPolicy.INVITE and view.role is None
    assert await spaces.members(ADMIN, "ops") == []
    assert recorder.actions() == ["space_created", "member_added", "space_created"]


@pytest.mark.parametrize("slug", ["", "Eng", "e/x", "..", "e%2Fx", "e\x00x", "-eng", "eng-", "e" * 65, "é"])
async def test_bad_slugs_are_refused_and_nothing_is_written(spaces: SpaceService, slug: str) -> None:
    before = await tables(spaces.db)
    assert await code_of(spaces.create(ADMIN, slug, "T")) == "invalid_slug"
    assert await tables(spaces.db) == before


async def test_bad_titles_and_taken_slugs(spaces: SpaceService) -> None:
    await spaces.create(ADMIN, "eng", "Engineering")
    before = await tables(spaces.db)
    assert await code_of(spaces.create(ADMIN, "eng", "Again")) == "slug_taken"
    assert await code_of(spaces.create(ADMIN, "x", "a\x07b")) == "invalid_title"
    assert await code_of(spaces.create(ADMIN, "x", "t" * 201)) == "invalid_title"
    assert await code_of(spaces.create(ADMIN, "x", "  ")) == "invalid_title"
    assert await code_of(spaces.update(ADMIN, "eng", description="d" * 4001)) == "invalid_description"
    assert await code_of(spaces.create(ANN, "mine", "Mine")) == "forbidden"
    assert await tables(spaces.db) == before


async def test_members_roles_and_revocations(spaces: SpaceService, recorder: Recorder) -> None:
    await spaces.create(OPERATOR, "eng", "Engineering")
    await spaces.add_member(ADMIN, "eng", "ann", SpaceRole.ADMIN)
    await spaces.add_member(ANN, "eng", "bob", SpaceRole.EDITOR)
    assert await code_of(spaces.add_member(ANN, "eng", "bob", SpaceRole.VIEWER)) == "already_member"
    assert await code_of(spaces.add_member(BOB, "eng", "cat", SpaceRole.VIEWER)) == "forbidden"
    assert await code_of(spaces.add_member(ANN, "eng", "nobody", SpaceRole.VIEWER)) == "person_not_found"
    recorder.revocations.clear()

    await spaces.set_role(ANN, "eng", "bob", SpaceRole.MODERATOR)  # up: nothing to revoke
    assert recorder.revocations == []
    await spaces.set_role(ANN, "eng", "bob", SpaceRole.VIEWER)  # down
    assert recorder.revocations == [Revocation(principal="bob@here", prefix="eng/")]
    await spaces.remove_member(ANN, "eng", "bob@here")
    assert recorder.revocations[-1] == Revocation(principal="bob@here", prefix="eng/")
    assert await code_of(spaces.remove_member(ANN, "eng", "bob")) == "member_not_found"

    # The last space admin stays unless a site admin acts; every member may leave.
    assert await code_of(spaces.remove_member(ANN, "eng", "ann")) == "last_admin"
    assert await code_of(spaces.set_role(ANN, "eng", "ann", SpaceRole.EDITOR)) == "last_admin"
    await spaces.add_member(ANN, "eng", "cat", SpaceRole.VIEWER)
    await spaces.remove_member(CAT, "eng", "cat")
    await spaces.remove_member(ADMIN, "eng", "ann")
    assert await spaces.members(ADMIN, "eng") == []

    log = await spaces.store.member_log("eng")
    assert [(p, r) for p, r, _ in log] == [
        ("ann@here", "admin"), ("bob@here", "editor"), ("bob@here", "moderator"),
        ("bob@here", "viewer"), ("bob@here", ""), ("cat@here", "viewer"), ("cat@here", ""), ("ann@here", ""),
    ]  # fmt: skip
    assert "member_role_changed" in recorder.actions() and "member_removed" in recorder.actions()


async def test_join_policies(spaces: SpaceService, recorder: Recorder) -> None:
    await spaces.create(ADMIN, "open", "Open")
    await spaces.create(ADMIN, "req", "On request", join_policy=JoinPolicy.REQUEST)
    await spaces.create(ADMIN, "inv", "Invitation", join_policy=JoinPolicy.INVITE)
    await spaces.create(ADMIN, "sec", "Secret", join_policy=JoinPolicy.REQUEST, visibility=Visibility.SECRET)

    joined = await spaces.admissions.join(ANN, "open")
    assert joined.member is not None and joined.member.role == SpaceRole.EDITOR
    assert await code_of(spaces.admissions.join(ANN, "open")) == "already_member"
    assert await code_of(spaces.admissions.join(ANN, "inv")) == "invitation_required"
    assert await code_of(spaces.admissions.join(ANN, "sec")) == "space_not_found"  # cannot learn it exists
    assert await code_of(spaces.admissions.join(GUS, "open")) == "space_not_found"  # guests do not see it
    assert await code_of(spaces.admissions.join(ANONYMOUS, "open")) == "unauthenticated"

    asked = await spaces.admissions.join(BOB, "req", message="let me in")
    assert asked.request is not None and asked.request.status == RequestStatus.PENDING
    assert await code_of(spaces.admissions.join(BOB, "req")) == "request_pending"
    request_id = asked.request.id
    assert await code_of(spaces.admissions.join_requests(BOB, "req")) == "forbidden"
    assert await code_of(spaces.admissions.decide_join_request(BOB, "req", request_id, True)) == "forbidden"
    assert (
        await code_of(spaces.admissions.decide_join_request(ADMIN, "open", request_id, True))
        == "join_request_not_found"
    )
    assert [r.id for r in await spaces.admissions.join_requests(ADMIN, "req")] == [request_id]

    decided = await spaces.admissions.decide_join_request(
        ADMIN, "req", request_id, True, role=SpaceRole.VIEWER
    )
    assert decided.status == RequestStatus.APPROVED
    assert (
        await code_of(spaces.admissions.decide_join_request(ADMIN, "req", request_id, False))
        == "already_decided"
    )
    # The requester is told: its own requests carry the decision.
    mine = await spaces.admissions.my_join_requests(BOB)
    assert [(r.status, r.decided_by) for r in mine] == [(RequestStatus.APPROVED, "root@here")]
    assert (await spaces.get(BOB, "req")).role == SpaceRole.VIEWER

    declined = await spaces.admissions.join(CAT, "req")
    assert declined.request is not None
    await spaces.admissions.decide_join_request(ADMIN, "req", declined.request.id, False)
    assert (await spaces.admissions.my_join_requests(CAT))[0].status == RequestStatus.DECLINED
    assert (await spaces.get(CAT, "req")).role is None
    assert recorder.actions().count("join_approved") == 1
    assert recorder.actions().count("join_declined") == 1


async def test_invitations(spaces: SpaceService) -> None:
    await spaces.create(ADMIN, "sec", "Secret", join_policy=JoinPolicy.INVITE, visibility=Visibility.SECRET)
    assert await code_of(spaces.get(GUS, "sec")) == "space_not_found"
    invitation = await spaces.admissions.invite(ADMIN, "sec", "gus", SpaceRole.EDITOR)
    assert (
        await code_of(spaces.admissions.invite(ADMIN, "sec", "gus", SpaceRole.VIEWER)) == "invitation_pending"
    )
    # Invited, the guest sees the space (to answer) but reads nothing yet.
    assert (await spaces.get(GUS, "sec")).invited
    assert [s.space.slug for s in await spaces.list_spaces(GUS)] == ["sec"]
    assert await code_of(spaces.members(GUS, "sec")) == "forbidden"
    # Nobody else can answer it, and to them it does not exist.
    assert (
        await code_of(spaces.admissions.answer_invitation(ANN, invitation.id, True)) == "invitation_not_found"
    )
    assert await code_of(spaces.admissions.answer_invitation(GUS, "../x", True)) == "invitation_not_found"
    accepted = await spaces.admissions.answer_invitation(GUS, invitation.id, True)
    assert accepted.status == InvitationStatus.ACCEPTED
    assert (await spaces.get(GUS, "sec")).role == SpaceRole.EDITOR
    assert await code_of(spaces.admissions.answer_invitation(GUS, invitation.id, False)) == "already_decided"

    other = await spaces.admissions.invite(ADMIN, "sec", "ann", SpaceRole.VIEWER)
    withdrawn = await spaces.admissions.withdraw_invitation(ADMIN, "sec", other.id)
    assert withdrawn.status == InvitationStatus.WITHDRAWN
    assert await code_of(spaces.admissions.answer_invitation(ANN, other.id, True)) == "already_decided"
    assert [i.status for i in await spaces.admissions.my_invitations(ANN)] == [InvitationStatus.WITHDRAWN]


async def test_archive_freezes_and_revokes(spaces: SpaceService, recorder: Recorder) -> None:
    await spaces.create(ADMIN, "eng", "Engineering")
    await spaces.add_member(ADMIN, "eng", "ann", SpaceRole.ADMIN)
    recorder.revocations.clear()
    assert await code_of(spaces.set_archived(BOB, "eng", True)) == "forbidden"
    await spaces.set_archived(ANN, "eng", True)
    assert recorder.revocations == [Revocation(prefix="eng/")]
    before = await tables(spaces.db)
    assert await code_of(spaces.add_member(ANN, "eng", "bob", SpaceRole.VIEWER)) == "space_archived"
    assert await code_of(spaces.update(ANN, "eng", title="New")) == "space_archived"
    assert await code_of(spaces.admissions.join(BOB, "eng")) == "space_archived"
    assert await tables(spaces.db) == before
    await spaces.set_archived(ANN, "eng", False)
    assert recorder.actions()[-2:] == ["space_archived", "space_unarchived"]
    await spaces.update(ANN, "eng", title="Engineering 2", join_policy=JoinPolicy.REQUEST)
    assert recorder.revocations[-1] == Revocation(prefix="eng/")
    assert (await spaces.get(BOB, "eng")).space.title == "Engineering 2"


async def test_list_shows_what_the_caller_may_see(spaces: SpaceService) -> None:
    await spaces.create(ADMIN, "open", "Open")
    await spaces.create(ADMIN, "sec", "Secret", join_policy=JoinPolicy.INVITE, visibility=Visibility.SECRET)
    await spaces.create(
        ADMIN, "sec2", "Secret 2", join_policy=JoinPolicy.INVITE, visibility=Visibility.SECRET
    )
    await spaces.add_member(ADMIN, "sec2", "ann", SpaceRole.VIEWER)
    assert [v.space.slug for v in await spaces.list_spaces(ANN)] == ["open", "sec2"]
    assert [v.space.slug for v in await spaces.list_spaces(BOB)] == ["open"]
    assert [v.space.slug for v in await spaces.list_spaces(CM)] == ["open", "sec", "sec2"]
    assert [v.space.slug for v in await spaces.list_spaces(GUS)] == []
    assert await code_of(spaces.list_spaces(ANONYMOUS)) == "unauthenticated"


async def test_authorizer(spaces: SpaceService, database: Database) -> None:
    await spaces.create(ADMIN, "open", "Open")
    await spaces.create(ADMIN, "sec", "Secret", join_policy=JoinPolicy.INVITE, visibility=Visibility.SECRET)
    await spaces.add_member(ADMIN, "sec", "ann", SpaceRole.EDITOR)
    await spaces.add_member(ADMIN, "sec", "gus", SpaceRole.ADMIN)
    authorizer = SpaceAuthorizer(spaces.store, PageStore(spaces.db))
    assert await authorizer.authorize(ANN, "sec/page") == Grant.WRITE
    assert await authorizer.authorize(GUS, "sec/page") == Grant.READ  # a guest reads only
    assert await authorizer.authorize(BOB, "sec/page") == Grant.NONE
    assert await authorizer.authorize(BOB, "open/page") == Grant.READ
    assert await authorizer.authorize(ADMIN, "open/page") == Grant.MODERATE
    assert await authorizer.authorize(ANONYMOUS, "open/page") == Grant.NONE
    for name in ["open", "open/", "nosuch/page", "open/../sec/page", "open//x", "open%2Fx", "open/a%2Fb",
                 "open/a\x00b", "open/./x", "Open/x", "/open/x", "open\\x/y"]:  # fmt: skip
        assert await authorizer.authorize(ADMIN, name) == Grant.NONE, name
    reading = SpaceAuthorizer(spaces.store, PageStore(spaces.db), anonymous_read=True)
    assert await reading.authorize(ANONYMOUS, "open/page") == Grant.READ
    assert await reading.authorize(ANONYMOUS, "sec/page") == Grant.NONE
    await spaces.set_archived(ADMIN, "sec", True)
    assert await authorizer.authorize(ANN, "sec/page") == Grant.READ
    assert await authorizer.authorize(ADMIN, "sec/page") == Grant.READ


async def test_idp_groups_give_roles_in_spaces(spaces: SpaceService, database: Database) -> None:
    await spaces.create(ADMIN, "sec", "Secret", join_policy=JoinPolicy.INVITE, visibility=Visibility.SECRET)
    await spaces.add_member(ADMIN, "sec", "bob", SpaceRole.ADMIN)
    await database.execute(
        "INSERT INTO people (name, site_role, idp_groups, created_at) VALUES ('ann', 'member', $1, 0)",
        '["eng-team", "all-staff"]',
    )
    authorizer = SpaceAuthorizer(spaces.store, PageStore(spaces.db))
    assert await authorizer.authorize(ANN, "sec/page") == Grant.NONE
    await database.execute(
        "INSERT INTO idp_group_roles (idp_group, space, role) VALUES "
        "('eng-team', 'sec', 'viewer'), ('all-staff', 'sec', 'editor'), ('other', 'sec', 'admin')"
    )
    # The highest role any of the person's groups gives counts, for documents and for REST.
    assert await authorizer.authorize(ANN, "sec/page") == Grant.WRITE
    assert [v.space.slug for v in await spaces.list_spaces(ANN)] == ["sec"]
    assert (await spaces.get(ANN, "sec")).role == SpaceRole.EDITOR
    assert await code_of(spaces.add_member(ANN, "sec", "cat", SpaceRole.VIEWER)) == "forbidden"
    # A membership above the groups' role wins; another site's person with the same name gets nothing.
    await spaces.add_member(BOB, "sec", "ann", SpaceRole.MODERATOR)
    assert await authorizer.authorize(ANN, "sec/page") == Grant.MODERATE
    assert await authorizer.authorize(Principal("ann@elsewhere", "ann", "member"), "sec/page") == Grant.NONE
