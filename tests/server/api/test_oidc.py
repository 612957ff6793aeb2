"""OpenID Connect sign-in against a test identity provider on 127.0.0.1 (tests/server/api/idp.py):
the code flow with PKCE signs a person in; expired, wrongly signed, wrong-audience,
wrong-issuer and wrong-nonce ID tokens are refused and change nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from server.db import Database
from server.settings import Settings

from .conftest import Api, make_api
from .idp import CLIENT_ID, CLIENT_SECRET, FakeIdP, running_idp


@pytest.fixture
async def idp() -> AsyncIterator[FakeIdP]:
    async with running_idp() as provider:
        yield provider


@pytest.fixture
async def oidc_api(database: Database, idp: FakeIdP) -> Api:
    settings = Settings(oidc_issuer=idp.issuer, oidc_client_id=CLIENT_ID, oidc_client_secret=CLIENT_SECRET)
    return make_api(database, settings)


async def sign_in(api: Api, client: httpx.AsyncClient, return_to: str = "/wiki/start") -> httpx.Response:
    """Follow the browser's way: Samen → the IdP (which signs in at once) → the callback."""
    start = await client.get("/api/v1/oidc/login", params={"return_to": return_to})
    assert start.status_code == 302, start.text
    async with httpx.AsyncClient(trust_env=False) as browser:
        at_idp = await browser.get(start.headers["location"])
    assert at_idp.status_code == 302
    back = httpx.URL(at_idp.headers["location"])
    assert back.path == "/api/v1/oidc/callback"
    return await client.get(back.path, params=dict(back.params))


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def test_a_good_id_token_signs_in(oidc_api: Api, idp: FakeIdP) -> None:
    idp.claims = {**idp.claims, "name": "Ann Smith", "groups": ["eng"]}
    async with oidc_api.client() as client:
        done = await sign_in(oidc_api, client)
        assert done.status_code == 302 and done.headers["location"] == "/wiki/start"
        me = (await client.get("/api/v1/me")).json()
    assert me["id"] == "ann@local" and me["email"] == "ann@corp.example" and me["display_name"] == "Ann Smith"
    assert me["site_role"] == "member" and me["via"] == "cookie"
    assert idp.verifiers_checked == 1  # the token endpoint saw the right PKCE verifier
    person = await oidc_api.auth.people.require("ann")
    assert person.idp_groups == ("eng",) and not person.has_password
    assert [e.action for e in await oidc_api.auth.audit.query()] == ["oidc_sign_in", "person_created"]
    # Again: the same person, not a new one.
    async with oidc_api.client() as client:
        assert (await sign_in(oidc_api, client)).status_code == 302
    assert await oidc_api.count("people") == 1


@pytest.mark.parametrize(
    "forgery",
    ["expired", "wrong_key", "wrong_audience", "wrong_issuer", "wrong_nonce", "no_subject", "alg_none"],
)
async def test_bad_id_tokens_are_refused(oidc_api: Api, idp: FakeIdP, forgery: str) -> None:
    now = int(time.time())
    changes: dict[str, dict[str, Any]] = {
        "expired": {"exp": now - 3600, "iat": now - 7200},
        "wrong_audience": {"aud": "someone-else"},
        "wrong_issuer": {"iss": "http://127.0.0.1:1/other"},
        "wrong_nonce": {"nonce": "replayed"},
    }
    if forgery == "wrong_key":
        idp.sign_with = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif forgery == "no_subject":
        idp.claims = {k: v for k, v in idp.claims.items() if k != "sub"}
    elif forgery == "alg_none":
        idp.mint = lambda nonce: _unsigned(idp, nonce)  # type: ignore[method-assign]
    else:
        idp.overrides = changes[forgery]
    async with oidc_api.client() as client:
        response = await sign_in(oidc_api, client)
        assert response.status_code == 401, response.text
        assert error_code(response) == "invalid_id_token"
        assert (await client.get("/api/v1/me")).status_code == 401
    assert await oidc_api.count("people") == 0 and await oidc_api.count("web_sessions") == 0


async def test_rotated_keys_are_fetched_again(oidc_api: Api, idp: FakeIdP) -> None:
    assert oidc_api.auth.oidc is not None
    oidc_api.auth.oidc.jwks_min_refresh = 0  # the test rotates within the refresh interval
    async with oidc_api.client() as client:
        assert (await sign_in(oidc_api, client)).status_code == 302
    idp.rotate()
    async with oidc_api.client() as client:
        assert (await sign_in(oidc_api, client)).status_code == 302


async def test_the_callback_must_come_back_to_the_browser_that_started(oidc_api: Api, idp: FakeIdP) -> None:
    async with oidc_api.client() as client:
        start = await client.get("/api/v1/oidc/login")
        async with httpx.AsyncClient(trust_env=False) as browser:
            back = httpx.URL((await browser.get(start.headers["location"])).headers["location"])
    async with oidc_api.client() as victim:  # another browser: no state cookie
        response = await victim.get(back.path, params=dict(back.params))
        assert response.status_code == 401 and error_code(response) == "invalid_state"
    async with oidc_api.client() as client:
        response = await client.get("/api/v1/oidc/callback", params={"code": "x", "state": "y"})
        assert response.status_code == 401 and error_code(response) == "invalid_state"
        refused = await client.get("/api/v1/oidc/callback", params={"error": "access_denied"})
        assert refused.status_code == 401 and error_code(refused) == "idp_refused"
        open_redirect = await client.get("/api/v1/oidc/login", params={"return_to": "//evil.example/"})
        assert open_redirect.status_code == 422 and error_code(open_redirect) == "invalid_return_to"
    assert await oidc_api.count("web_sessions") == 0


def _unsigned(idp: FakeIdP, nonce: str) -> str:
    import jwt

    now = int(time.time())
    claims = {"iss": idp.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": nonce, **idp.claims}
    return jwt.encode(claims, None, algorithm="none", headers={"kid": idp.kid})
