"""The space rules (server/domain/space_rules.py) as pure functions: the grant of every kind
of principal in every kind of space, archived spaces, read tokens, guests, anonymous reads,
and the REST refusals (401 / 404 for what one may not see / 403 / 409)."""

from __future__ import annotations

import dataclasses

import pytest

from server.auth.ports import ANONYMOUS, Grant, Principal
from server.domain.space_rules import Action, Standing, check, document_grant, sees
from server.domain.spaces import JoinPolicy, Space, SpaceError, SpaceRole, Visibility

N, R, W, M = Grant.NONE, Grant.READ, Grant.WRITE, Grant.MODERATE

SPACES = {
    "open": Space("open", "Open", join_policy=JoinPolicy.OPEN),
    "request": Space("request", "On request", join_policy=JoinPolicy.REQUEST),
    "invite": Space("invite", "Invitation only", join_policy=JoinPolicy.INVITE),
    "secret": Space("secret", "Secret", join_policy=JoinPolicy.INVITE, visibility=Visibility.SECRET),
}

# who: (principal, role in the space)
WHO: dict[str, tuple[Principal, SpaceRole | None]] = {
    "anonymous": (ANONYMOUS, None),
    "guest": (Principal("g@s", "g", "guest"), None),
    "guest-member": (Principal("gm@s", "gm", "guest"), SpaceRole.EDITOR),
    "outsider": (Principal("o@s", "o", "member"), None),
    "viewer": (Principal("v@s", "v", "member"), SpaceRole.VIEWER),
    "editor": (Principal("e@s", "e", "member"), SpaceRole.EDITOR),
    "moderator": (Principal("m@s", "m", "member"), SpaceRole.MODERATOR),
    "space-admin": (Principal("a@s", "a", "member"), SpaceRole.ADMIN),
    "community-manager": (Principal("c@s", "c", "community-manager"), None),
    "site-admin": (Principal("x@s", "x", "admin"), None),
}

#                       open request invite secret
GRANTS = {
    "anonymous":         (N,   N,      N,     N),
    "guest":             (N,   N,      N,     N),
    "guest-member":      (R,   R,      R,     R),
    "outsider":          (R,   N,      N,     N),
    "viewer":            (R,   R,      R,     R),
    "editor":            (W,   W,      W,     W),
    "moderator":         (M,   M,      M,     M),
    "space-admin":       (M,   M,      M,     M),
    "community-manager": (M,   M,      M,     M),
    "site-admin":        (M,   M,      M,     M),
}  # fmt: skip


@pytest.mark.parametrize("who", GRANTS)
def test_document_grants(who: str) -> None:
    principal, role = WHO[who]
    got = tuple(document_grant(principal, space, role) for space in SPACES.values())
    assert got == GRANTS[who]


@pytest.mark.parametrize("who", GRANTS)
def test_archived_spaces_are_read_only_for_members(who: str) -> None:
    principal, role = WHO[who]
    for space in SPACES.values():
        archived = dataclasses.replace(space, archived=True)
        grant = document_grant(principal, archived, role)
        if role is None and principal.site_role not in ("admin", "community-manager"):
            assert grant == N, (who, space.slug)
        else:
            assert grant == R, (who, space.slug)


def test_unknown_space_and_read_tokens() -> None:
    admin = WHO["site-admin"][0]
    assert document_grant(admin, None, None) == N
    reader = dataclasses.replace(WHO["editor"][0], scope="read")
    assert document_grant(reader, SPACES["open"], SpaceRole.EDITOR) == R
    with pytest.raises(SpaceError) as refused:
        check(Action.MANAGE, dataclasses.replace(admin, scope="read"), SPACES["open"])
    assert refused.value.code == "read_only_token"


def test_anonymous_read_is_for_listed_open_live_spaces_only() -> None:
    grants = [document_grant(ANONYMOUS, s, None, anonymous_read=True) for s in SPACES.values()]
    assert grants == [R, N, N, N]
    archived = dataclasses.replace(SPACES["open"], archived=True)
    assert document_grant(ANONYMOUS, archived, None, anonymous_read=True) == N


def test_secret_spaces_are_seen_by_members_invitees_and_site_staff_only() -> None:
    secret = SPACES["secret"]
    assert not sees(WHO["outsider"][0], secret, Standing())
    assert not sees(WHO["guest"][0], secret, Standing())
    assert sees(WHO["guest"][0], secret, Standing(invited=True))
    assert sees(WHO["viewer"][0], secret, Standing(SpaceRole.VIEWER))
    assert sees(WHO["community-manager"][0], secret, Standing())
    # Guests do not see listed spaces they are not in either.
    assert not sees(WHO["guest"][0], SPACES["open"], Standing())
    assert sees(WHO["outsider"][0], SPACES["invite"], Standing())


# The REST refusal for each (who, action) in a listed on-request space and in a secret one:
# "ok", or the error code.
REST = {
    #                    SEE                LIST_MEMBERS       MANAGE
    "anonymous":         ("unauthenticated", "unauthenticated", "unauthenticated"),
    "guest":             ("space_not_found", "space_not_found", "space_not_found"),
    "guest-member":      ("ok",              "ok",              "forbidden"),
    "outsider":          ("ok",              "forbidden",       "forbidden"),
    "viewer":            ("ok",              "ok",              "forbidden"),
    "moderator":         ("ok",              "ok",              "forbidden"),
    "space-admin":       ("ok",              "ok",              "ok"),
    "community-manager": ("ok",              "ok",              "forbidden"),
    "site-admin":        ("ok",              "ok",              "ok"),
}  # fmt: skip


def _outcome(action: Action, who: str, space: Space) -> str:
    principal, role = WHO[who]
    try:
        check(action, principal, space, Standing(role))
    except SpaceError as exc:
        return exc.code
    return "ok"


@pytest.mark.parametrize("who", REST)
def test_rest_refusals(who: str) -> None:
    actions = (Action.SEE, Action.LIST_MEMBERS, Action.MANAGE)
    assert tuple(_outcome(a, who, SPACES["request"]) for a in actions) == REST[who]
    # In a secret space, who does not see it gets "no such space" for everything.
    secret = tuple(_outcome(a, who, SPACES["secret"]) for a in actions)
    expected = REST[who] if who != "outsider" else ("space_not_found",) * 3
    assert secret == expected


def test_a_space_that_does_not_exist_reads_like_a_secret_one() -> None:
    outsider = WHO["outsider"][0]
    for action in Action:
        with pytest.raises(SpaceError) as missing:
            check(action, outsider, None)
        with pytest.raises(SpaceError) as hidden:
            check(action, outsider, SPACES["secret"])
        assert (missing.value.status, missing.value.code, missing.value.message) == (
            hidden.value.status,
            hidden.value.code,
            hidden.value.message,
        )
