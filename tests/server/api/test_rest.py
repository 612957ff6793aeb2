"""The REST base and the people/credentials endpoints: errors always JSON with a code, the
caller from a cookie or a Bearer token, CSRF for cookie calls, admin-only people and audit."""

from __future__ import annotations

import pytest

from protocol.backplane import Revocation
from server.db import Database
from server.settings import Settings

from .conftest import PASSWORD, Api, make_api


def error_code(response: object) -> str:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


async def test_sign_in_sets_a_safe_cookie_and_me_says_who(api: Api) -> None:
    async with api.client() as client:
        response = await client.post("/api/v1/session", json={"name": "ann", "password": PASSWORD})
        assert response.status_code == 200
        cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("samen_session="))
        attributes = {a.strip().lower() for a in cookie.split(";")}
        assert {"httponly", "samesite=lax", "path=/"} <= attributes
        assert "secure" not in attributes  # plain http: a Secure cookie would never come back
        me = await client.get("/api/v1/me")
        assert me.status_code == 200
        body = me.json()
        assert body["id"] == "ann@local" and body["name"] == "ann" and body["via"] == "cookie"
        assert body["csrf_token"] == response.json()["csrf_token"]
        wrong = await client.post("/api/v1/session", json={"name": "ann", "password": "not it at all"})
        assert wrong.status_code == 401 and error_code(wrong) == "wrong_credentials"


async def test_cookie_is_secure_over_tls(database: Database) -> None:
    api = make_api(database, base_url="https://wiki.test")
    await api.auth.accounts.add_person("ann", actor="cli", password=PASSWORD)
    async with api.client() as client:
        response = await client.post("/api/v1/session", json={"name": "ann", "password": PASSWORD})
        cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("samen_session="))
        assert "secure" in {a.strip().lower() for a in cookie.split(";")}


async def test_eleventh_failed_sign_in_within_a_minute_is_429(database: Database) -> None:
    api = make_api(database, Settings())  # the default: 10 failures per minute
    await api.auth.accounts.add_person("ann", actor="cli", password=PASSWORD)
    async with api.client() as client:
        for _ in range(10):
            response = await client.post("/api/v1/session", json={"name": "ann", "password": "guess guess"})
            assert response.status_code == 401
        response = await client.post("/api/v1/session", json={"name": "ann", "password": PASSWORD})
        assert response.status_code == 429 and error_code(response) == "rate_limited"
        assert int(response.headers["retry-after"]) >= 1
    assert await api.count("web_sessions") == 0


async def test_sign_out_ends_the_session_and_revokes(api: Api) -> None:
    async with api.signed_in("ann") as (client, csrf):
        response = await client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
        assert response.status_code == 204
        assert api.revoked == [Revocation(principal="ann@local")]
        assert (await client.get("/api/v1/me")).status_code == 401
    assert await api.count("web_sessions") == 0


async def test_state_changing_cookie_calls_need_csrf_and_an_allowed_origin(api: Api) -> None:
    async with api.signed_in("ann") as (client, csrf):
        missing = await client.post("/api/v1/tokens", json={})
        assert missing.status_code == 403 and error_code(missing) == "csrf_failed"
        wrong = await client.post("/api/v1/tokens", json={}, headers={"X-CSRF-Token": "x" * 43})
        assert wrong.status_code == 403 and error_code(wrong) == "csrf_failed"
        foreign = await client.post(
            "/api/v1/tokens", json={}, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
        )
        assert foreign.status_code == 403 and error_code(foreign) == "bad_origin"
        assert await api.count("api_tokens") == 0
        ok = await client.post(
            "/api/v1/tokens", json={}, headers={"X-CSRF-Token": csrf, "Origin": "http://wiki.test"}
        )
        assert ok.status_code == 201
    # Sign-in from a foreign page (login CSRF) is refused too.
    async with api.client(headers={"Origin": "https://evil.example"}) as other:
        response = await other.post("/api/v1/session", json={"name": "ann", "password": PASSWORD})
        assert response.status_code == 403 and error_code(response) == "bad_origin"


async def test_bearer_tokens_need_no_csrf_and_read_scope_only_reads(api: Api) -> None:
    async with api.bearer(await api.token("ann")) as client:
        assert (await client.post("/api/v1/tokens", json={"scope": "read"})).status_code == 201
        me = (await client.get("/api/v1/me")).json()
        assert me["via"] == "token" and me["csrf_token"] is None and me["scope"] == "write"
    async with api.bearer(await api.token("ann", scope="read")) as reader:
        assert (await reader.get("/api/v1/tokens")).status_code == 200
        refused = await reader.post("/api/v1/tokens", json={})
        assert refused.status_code == 403 and error_code(refused) == "insufficient_scope"


async def test_tokens_are_shown_once_listed_and_revoked_by_owner_or_admin(api: Api) -> None:
    async with api.bearer(await api.token("ann")) as ann:
        created = await ann.post("/api/v1/tokens", json={"scope": "read", "expires_in": "30d", "label": "ci"})
        assert created.status_code == 201
        body = created.json()
        assert body["token"].startswith(f"samen_{body['id']}_") and body["person"] == "ann@local"
        listed = (await ann.get("/api/v1/tokens")).json()
        assert body["id"] in {t["id"] for t in listed} and all("token" not in t for t in listed)
        revoked = await ann.delete(f"/api/v1/tokens/{body['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert api.revoked[-1] == Revocation(principal="ann@local", token=body["id"])
        root_token = await api.auth.tokens.of("root")
        assert root_token == []
    root_token = await api.token("root")
    root_id = root_token.split("_")[1]
    async with api.bearer(await api.token("ann")) as ann:
        # Someone else's token reads as missing.
        response = await ann.delete(f"/api/v1/tokens/{root_id}")
        assert response.status_code == 404 and error_code(response) == "token_not_found"
        other = await ann.get("/api/v1/tokens", params={"person": "root"})
        assert other.status_code == 403
    async with api.bearer(root_token) as root:
        assert len((await root.get("/api/v1/tokens", params={"person": "ann"})).json()) >= 2
        made = await root.post("/api/v1/tokens", json={"person": "ann"})
        assert made.status_code == 201 and made.json()["person"] == "ann@local"
        assert (await root.delete(f"/api/v1/tokens/{made.json()['id']}")).status_code == 200


async def test_people_are_for_admins(api: Api) -> None:
    async with api.client() as anonymous:
        response = await anonymous.get("/api/v1/people")
        assert response.status_code == 401 and error_code(response) == "unauthenticated"
    async with api.bearer(await api.token("ann")) as ann:
        response = await ann.get("/api/v1/people")
        assert response.status_code == 403 and error_code(response) == "forbidden"
    async with api.bearer(await api.token("root")) as root:
        created = await root.post(
            "/api/v1/people", json={"name": "bob", "site_role": "guest", "password": PASSWORD}
        )
        assert created.status_code == 201 and created.json()["id"] == "bob@local"
        taken = await root.post("/api/v1/people", json={"name": "bob"})
        assert taken.status_code == 409 and error_code(taken) == "name_taken"
        page = (await root.get("/api/v1/people", params={"limit": 2})).json()
        assert [p["name"] for p in page["people"]] == ["ann", "bob"] and page["next_after"] == "bob"
        rest = (await root.get("/api/v1/people", params={"after": "bob"})).json()
        assert [p["name"] for p in rest["people"]] == ["root"] and rest["next_after"] is None
        promoted = await root.patch("/api/v1/people/bob", json={"site_role": "community-manager"})
        assert promoted.json()["site_role"] == "community-manager"
        suspended = await root.patch("/api/v1/people/ann", json={"suspended": True})
        assert suspended.status_code == 200 and suspended.json()["suspended"] is True
        assert Revocation(principal="ann@local") in api.revoked
        last = await root.patch("/api/v1/people/root", json={"suspended": True})
        assert last.status_code == 409 and error_code(last) == "last_admin"
    async with api.client() as client:
        response = await client.post("/api/v1/session", json={"name": "ann", "password": PASSWORD})
        assert response.status_code == 403 and error_code(response) == "account_suspended"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("post", "/api/v1/people", "{not json", 400, "invalid_json"),
        ("post", "/api/v1/people", '{"name": "x", "colour": "red"}', 422, "invalid_request"),
        ("post", "/api/v1/people", '{"name": "' + "a" * 65 + '"}', 422, "invalid_request"),
        ("post", "/api/v1/people", '{"name": "bad\\u0000name"}', 422, "invalid_name"),
        ("post", "/api/v1/people", '{"name": "new\\nline"}', 422, "invalid_name"),
        ("post", "/api/v1/people", '{"name": "../etc"}', 422, "invalid_name"),
        ("post", "/api/v1/people", '{"name": "x", "site_role": "emperor"}', 422, "invalid_request"),
        ("post", "/api/v1/people", '{"name": "x", "email": "not an email"}', 422, "invalid_email"),
        ("post", "/api/v1/people", "[1, 2]", 422, "invalid_request"),
        ("patch", "/api/v1/people/nobody", '{"suspended": true}', 404, "person_not_found"),
        ("patch", "/api/v1/people/..%2Froot", '{"suspended": true}', 404, "not_found"),
        ("patch", "/api/v1/people/%00root", '{"suspended": true}', 404, "person_not_found"),
        ("get", "/api/v1/people/" + "a" * 65, None, 422, "invalid_request"),
        ("delete", "/api/v1/tokens/000000000000", None, 404, "token_not_found"),
        ("post", "/api/v1/tokens", '{"expires_in": "forever"}', 422, "invalid_duration"),
        ("post", "/api/v1/tokens", '{"scope": "admin"}', 422, "invalid_request"),
        ("post", "/api/v1/tokens", '{"label": "a\\u0007b"}', 422, "invalid_label"),
        ("get", "/api/v1/audit?limit=100000", None, 422, "invalid_request"),
        ("get", "/api/v1/audit?since=nan", None, 422, "invalid_request"),
        ("get", "/api/v1/audit?actor=%00", None, 200, ""),
        ("get", "/api/v1/people?after=%00", None, 422, "invalid_request"),
        ("get", "/api/v1/tokens?person=%00x", None, 404, "person_not_found"),
        (
            "post",
            "/api/v1/session",
            '{"name": "a\\u0000b", "password": "xxxxxxxx"}',
            401,
            "wrong_credentials",
        ),
        ("get", "/api/v1/oidc/callback?state=%00%ff&code=x", None, 404, "oidc_not_configured"),
        ("get", "/api/v1/no-such-route", None, 404, "not_found"),
        ("put", "/api/v1/me", None, 405, "method_not_allowed"),
    ],
)
async def test_bad_input_is_a_4xx_json_error_and_changes_nothing(
    api: Api, method: str, path: str, body: str | None, status: int, code: str
) -> None:
    token = await api.token("root")
    before = {t: await api.count(t) for t in ("people", "api_tokens", "web_sessions")}
    async with api.bearer(token) as root:
        headers = {"content-type": "application/json"}
        response = await root.request(method.upper(), path, content=body, headers=headers)
    assert response.status_code == status, response.text
    if status < 400:
        return
    assert error_code(response) == code
    assert "Traceback" not in response.text
    assert {t: await api.count(t) for t in before} == before


@pytest.mark.parametrize(
    "token",
    [
        "samen_000000000000_" + "A" * 43,  # unknown id
        "not-a-token",
        "samen_" + "0" * 12 + "_" + "%" * 43,
        "x" * 5000,
    ],
)
async def test_forged_tokens_are_401(api: Api, token: str) -> None:
    async with api.bearer(token) as client:
        response = await client.get("/api/v1/me")
    assert response.status_code == 401 and error_code(response) == "unauthenticated"


async def test_a_token_of_non_ascii_bytes_is_401(api: Api) -> None:
    async with api.client(headers={"Authorization": b"Bearer samen_\xe9\xff"}) as client:
        response = await client.get("/api/v1/me")
    assert response.status_code == 401 and error_code(response) == "unauthenticated"


async def test_expired_and_revoked_tokens_are_401(api: Api) -> None:
    info, token = await api.auth.accounts.create_token("ann", actor="cli", lifetime=1)
    await api.auth.db.execute("UPDATE api_tokens SET expires_at = 1 WHERE id = $1", info.id)
    async with api.bearer(token) as client:
        assert (await client.get("/api/v1/me")).status_code == 401
    info, token = await api.auth.accounts.create_token("ann", actor="cli")
    await api.auth.accounts.revoke_token(info.id, actor="cli")
    async with api.bearer(token) as client:
        response = await client.get("/api/v1/me")
        assert response.status_code == 401 and error_code(response) == "unauthenticated"
    # A forged secret for a real id is refused as well.
    async with api.bearer(f"samen_{info.id}_" + "A" * 43) as client:
        assert (await client.get("/api/v1/me")).status_code == 401


async def test_audit_records_sign_ins_tokens_and_suspensions(api: Api) -> None:
    async with api.client() as client:
        await client.post("/api/v1/session", json={"name": "ann", "password": "wrong wrong"})
        await client.post("/api/v1/session", json={"name": "ann", "password": PASSWORD})
    root = await api.token("root")
    async with api.bearer(root) as admin:
        await admin.patch("/api/v1/people/ann", json={"site_role": "guest"})
        await admin.patch("/api/v1/people/ann", json={"suspended": True})
        page = (await admin.get("/api/v1/audit", params={"limit": 3})).json()
        assert [e["action"] for e in page["entries"]] == [
            "person_suspended",
            "site_role_changed",
            "token_created",
        ]
        older = (await admin.get("/api/v1/audit", params={"before": page["next_before"]})).json()
        actions = [e["action"] for e in older["entries"]]
        assert actions[:2] == ["sign_in", "sign_in_failed"] and older["next_before"] is None
        failed = (await admin.get("/api/v1/audit", params={"action": "sign_in_failed"})).json()["entries"]
        assert failed[0]["target"] == "ann@local" and failed[0]["address"] == "192.0.2.7"
        assert failed[0]["site"] == "local" and failed[0]["actor"] == ""
        role = (await admin.get("/api/v1/audit", params={"action": "site_role_changed"})).json()["entries"][0]
        assert role["actor"] == "root@local" and role["detail"] == {"from": "member", "to": "guest"}
    async with api.bearer(await api.token("root", scope="read")) as reader:
        assert (await reader.get("/api/v1/audit")).status_code == 200
    await api.auth.accounts.add_person("cas", actor="cli")
    async with api.bearer(await api.token("cas")) as member:
        assert (await member.get("/api/v1/audit")).status_code == 403
