"""The space routes in-process (SQLite and PostgreSQL): a space's life over REST, the audit
entries and revocations it leaves, what a secret space answers to those who may not see
it, and bad input (path tricks in slugs, unknown ids, over-long and control-character
names, malformed JSON) answered with a 4xx JSON error that changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.backplane import Revocation

from .conftest import Api

SPACE_TABLES = ("spaces", "space_members", "space_member_log", "space_join_requests", "space_invitations")


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return str(body["error"]["code"])


async def tables(api: Api) -> dict[str, list[dict[str, Any]]]:
    names = (*SPACE_TABLES, "audit_log", "revocations")
    return {name: await api.auth.db.fetch(f"SELECT * FROM {name} ORDER BY 1, 2") for name in names}


@pytest.fixture
async def people(api: Api) -> Api:
    for name in ("bob", "cat"):
        await api.auth.accounts.add_person(name, actor="cli")
    await api.auth.accounts.add_person("gus", actor="cli", site_role="guest")
    return api


async def test_a_space_over_rest(people: Api) -> None:
    api = people
    root, ann, bob = [api.bearer(await api.token(n)) for n in ("root", "ann", "bob")]
    async with root, ann, bob:
        created = await root.post("/api/v1/spaces", json={"slug": "eng", "title": "Engineering"})
        assert created.status_code == 201, created.text
        assert created.json() | {"created_at": 0} == {
            "slug": "eng", "title": "Engineering", "description": "", "join_policy": "open",
            "visibility": "listed", "home": "", "archived": False, "default_role": "editor",
            "created_at": 0, "role": "admin", "invited": False,
        }  # fmt: skip
        assert (await ann.post("/api/v1/spaces", json={"slug": "x", "title": "X"})).status_code == 403

        # Join an open space at once; then the admin makes it "on request".
        joined = await ann.post("/api/v1/spaces/eng/join")
        assert joined.status_code == 200 and joined.json()["member"]["role"] == "editor"
        patched = await root.patch("/api/v1/spaces/eng", json={"join_policy": "request", "title": "Eng"})
        assert patched.json()["join_policy"] == "request" and patched.json()["title"] == "Eng"
        asked = await bob.post("/api/v1/spaces/eng/join", json={"message": "please"})
        assert asked.status_code == 202, asked.text
        request_id = asked.json()["join_request"]["id"]
        pending = (await root.get("/api/v1/spaces/eng/join-requests")).json()["join_requests"]
        assert [(r["id"], r["person"], r["message"]) for r in pending] == [
            (request_id, "bob@local", "please")
        ]
        assert (await ann.get("/api/v1/spaces/eng/join-requests")).status_code == 403
        approved = await root.post(
            f"/api/v1/spaces/eng/join-requests/{request_id}/approve", json={"role": "viewer"}
        )
        assert approved.json()["status"] == "approved"
        mine = (await bob.get("/api/v1/join-requests")).json()["join_requests"]
        assert [(r["status"], r["decided_by"]) for r in mine] == [("approved", "root@local")]

        # Members: list, set a role, remove; the lower role and the removal are revoked.
        members = (await bob.get("/api/v1/spaces/eng/members")).json()["members"]
        assert [(m["person"], m["role"]) for m in members] == [
            ("ann@local", "editor"), ("bob@local", "viewer"), ("root@local", "admin"),
        ]  # fmt: skip
        api.revoked.clear()
        assert (await root.put("/api/v1/spaces/eng/members/ann", json={"role": "viewer"})).status_code == 200
        assert (await root.delete("/api/v1/spaces/eng/members/bob@local")).status_code == 204
        assert api.revoked == [
            Revocation(principal="ann@local", prefix="eng/"),
            Revocation(principal="bob@local", prefix="eng/"),
        ]

        # Invitations: the invitee sees them and answers.
        invited = await root.post(
            "/api/v1/spaces/eng/invitations", json={"person": "cat", "role": "moderator"}
        )
        assert invited.status_code == 201, invited.text
        async with api.bearer(await api.token("cat")) as cat:
            assert [i["id"] for i in (await cat.get("/api/v1/invitations")).json()["invitations"]] == [
                invited.json()["id"]
            ]
            accepted = await cat.post(f"/api/v1/invitations/{invited.json()['id']}/accept")
            assert accepted.json()["status"] == "accepted"
            assert (await cat.get("/api/v1/spaces/eng")).json()["role"] == "moderator"

        # Archive: read-only, every session of the space is checked again.
        archived = await root.post("/api/v1/spaces/eng/archive")
        assert archived.json()["archived"] is True and api.revoked[-1] == Revocation(prefix="eng/")
        refused = await root.put("/api/v1/spaces/eng/members/ann", json={"role": "editor"})
        assert refused.status_code == 409 and error_code(refused) == "space_archived"
        assert (await root.post("/api/v1/spaces/eng/unarchive")).json()["archived"] is False

        audit = (await root.get("/api/v1/audit", params={"limit": 100})).json()["entries"]
        actions = [(e["action"], e["target"]) for e in reversed(audit) if e["target"].startswith("eng")]
        assert actions == [
            ("space_created", "eng"), ("member_added", "eng/root@local"), ("member_joined", "eng/ann@local"),
            ("space_updated", "eng"), ("join_requested", "eng/bob@local"), ("join_approved", "eng/bob@local"),
            ("member_role_changed", "eng/ann@local"), ("member_removed", "eng/bob@local"),
            ("invitation_created", "eng/cat@local"), ("invitation_accepted", "eng/cat@local"),
            ("space_archived", "eng"), ("space_unarchived", "eng"),
        ]  # fmt: skip


async def test_a_secret_space_answers_like_one_that_does_not_exist(people: Api) -> None:
    api = people
    async with api.bearer(await api.token("root")) as root:
        body = {"slug": "hush", "title": "Hush", "visibility": "secret", "join_policy": "invite"}
        assert (await root.post("/api/v1/spaces", json=body)).status_code == 201
    token = await api.token("ann")
    before = await tables(api)
    async with api.bearer(token) as ann:
        assert "hush" not in {s["slug"] for s in (await ann.get("/api/v1/spaces")).json()["spaces"]}
        for method, tail, body in [
            ("GET", "", None), ("PATCH", "", {"title": "x"}), ("POST", "/archive", None),
            ("GET", "/members", None), ("POST", "/members", {"person": "bob", "role": "viewer"}),
            ("POST", "/members", {"person": "nobody", "role": "viewer"}),
            ("PUT", "/members/bob", {"role": "viewer"}), ("DELETE", "/members/ann", None),
            ("POST", "/join", None), ("GET", "/join-requests", None),
            ("POST", "/join-requests/0123abcd/approve", None), ("GET", "/invitations", None),
            ("POST", "/invitations", {"person": "bob"}),
        ]:  # fmt: skip
            answers = []
            for slug in ("hush", "nosuch"):
                response = await ann.request(method, f"/api/v1/spaces/{slug}{tail}", json=body)
                answers.append((response.status_code, response.json()))
            assert answers[0] == answers[1] == (404, answers[0][1]), (method, tail, answers)
            assert answers[0][1]["error"]["code"] == "space_not_found"
    assert await tables(api) == before


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("post", "/api/v1/spaces", "{", 400, "invalid_json"),
        ("post", "/api/v1/spaces", '{"slug": "../x", "title": "t"}', 422, "invalid_slug"),
        ("post", "/api/v1/spaces", '{"slug": "a%2Fb", "title": "t"}', 422, "invalid_slug"),
        ("post", "/api/v1/spaces", '{"slug": "a/b", "title": "t"}', 422, "invalid_slug"),
        ("post", "/api/v1/spaces", '{"slug": "a\\u0000b", "title": "t"}', 422, "invalid_slug"),
        ("post", "/api/v1/spaces", '{"slug": "Eng", "title": "t"}', 422, "invalid_slug"),
        ("post", "/api/v1/spaces", '{"slug": "..", "title": "t"}', 422, "invalid_slug"),
        ("post", "/api/v1/spaces", '{"slug": "' + "x" * 65 + '", "title": "t"}', 422, "invalid_request"),
        ("post", "/api/v1/spaces", '{"slug": "ok", "title": "a\\u0007b"}', 422, "invalid_title"),
        ("post", "/api/v1/spaces", '{"slug": "ok", "title": "' + "t" * 201 + '"}', 422, "invalid_request"),
        ("post", "/api/v1/spaces", '{"slug": "ok", "title": "t", "home": "a\\u0000"}', 422, "invalid_home"),
        ("post", "/api/v1/spaces", '{"slug": "ok", "title": "t", "more": 1}', 422, "invalid_request"),
        (
            "post",
            "/api/v1/spaces",
            '{"slug": "ok", "title": "t", "join_policy": "all"}',
            422,
            "invalid_request",
        ),
        ("post", "/api/v1/spaces", '{"slug": "eng", "title": "again"}', 409, "slug_taken"),
        ("get", "/api/v1/spaces/%2E%2E", None, 404, "space_not_found"),
        ("get", "/api/v1/spaces/eng%00", None, 404, "space_not_found"),
        ("get", "/api/v1/spaces/eng%2Fsecret", None, 404, "not_found"),
        ("get", "/api/v1/spaces/" + "e" * 300, None, 404, "space_not_found"),
        ("get", "/api/v1/spaces/%C3%A9", None, 404, "space_not_found"),
        ("patch", "/api/v1/spaces/eng", '{"description": "a\\u0000"}', 422, "invalid_description"),
        ("patch", "/api/v1/spaces/eng", '{"visibility": "hidden"}', 422, "invalid_request"),
        ("patch", "/api/v1/spaces/eng", "[1, 2]", 422, "invalid_request"),
        (
            "post",
            "/api/v1/spaces/eng/members",
            '{"person": "nobody", "role": "viewer"}',
            404,
            "person_not_found",
        ),
        (
            "post",
            "/api/v1/spaces/eng/members",
            '{"person": "ann\\u0000", "role": "viewer"}',
            404,
            "person_not_found",
        ),
        (
            "post",
            "/api/v1/spaces/eng/members",
            '{"person": "ann", "role": "overlord"}',
            422,
            "invalid_request",
        ),
        (
            "post",
            "/api/v1/spaces/eng/members",
            '{"person": "ann@elsewhere", "role": "viewer"}',
            404,
            "person_not_found",
        ),
        ("put", "/api/v1/spaces/eng/members/bob", '{"role": "viewer"}', 404, "member_not_found"),
        ("put", "/api/v1/spaces/eng/members/%00", '{"role": "viewer"}', 404, "person_not_found"),
        ("delete", "/api/v1/spaces/eng/members/" + "a" * 400, None, 404, "person_not_found"),
        ("post", "/api/v1/spaces/eng/join", None, 409, "already_member"),
        ("post", "/api/v1/spaces/eng/join-requests/nope/approve", None, 404, "join_request_not_found"),
        ("post", "/api/v1/spaces/eng/join-requests/%00/decline", None, 404, "join_request_not_found"),
        ("post", "/api/v1/spaces/eng/join-requests/..%2F..%2Fx/approve", None, 404, "not_found"),
        ("get", "/api/v1/spaces/eng/join-requests?status=maybe", None, 422, "invalid_request"),
        ("post", "/api/v1/invitations/nope/accept", None, 404, "invitation_not_found"),
        ("post", "/api/v1/invitations/%00%FF/decline", None, 404, "invitation_not_found"),
        ("delete", "/api/v1/spaces/eng/invitations/nope", None, 404, "invitation_not_found"),
        ("post", "/api/v1/spaces/eng/invitations", '{"person": "root"}', 409, "already_member"),
    ],
)
async def test_bad_input_is_a_4xx_json_error_and_changes_nothing(
    people: Api, method: str, path: str, body: str | None, status: int, code: str
) -> None:
    """As the site admin who created `eng` (and is its admin)."""
    api = people
    async with api.bearer(await api.token("root")) as root:
        assert (await root.post("/api/v1/spaces", json={"slug": "eng", "title": "Eng"})).status_code == 201
        before = await tables(api)
        headers = {"content-type": "application/json"}
        response = await root.request(method.upper(), path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert "Traceback" not in response.text
    assert await tables(api) == before


async def test_read_tokens_and_anonymous_callers(people: Api) -> None:
    api = people
    async with api.bearer(await api.token("root")) as root:
        await root.post("/api/v1/spaces", json={"slug": "eng", "title": "Eng"})
    async with api.bearer(await api.token("root", scope="read")) as reader:
        assert (await reader.get("/api/v1/spaces/eng")).status_code == 200
        refused = await reader.post("/api/v1/spaces/eng/archive")
        assert refused.status_code == 403 and error_code(refused) == "insufficient_scope"
    async with api.client() as anonymous:
        for path in (
            "/api/v1/spaces",
            "/api/v1/spaces/eng",
            "/api/v1/spaces/eng/members",
            "/api/v1/invitations",
        ):
            response = await anonymous.get(path)
            assert response.status_code == 401 and error_code(response) == "unauthenticated", path
