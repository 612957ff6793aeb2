"""A small OpenID Connect provider for tests, on 127.0.0.1: discovery, JWKS, an authorize
endpoint that signs in at once (redirecting back with a code), and a token endpoint that
checks the client secret and the PKCE verifier and returns an ID token signed with its own
RSA key (PyJWT + cryptography). Tests shape the next ID token with `claims`, `sign_with`
and `header`, and rotate the key with `rotate()`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "samen-test"
CLIENT_SECRET = "s3cret-of-the-client"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeIdP:
    def __init__(self, port: int) -> None:
        self.issuer = f"http://127.0.0.1:{port}"
        self.key = _key()
        self.kid = "key-1"
        self.claims: dict[str, Any] = {"sub": "u-1", "preferred_username": "ann", "email": "ann@corp.example"}
        self.overrides: dict[str, Any] = {}  # applied last: exp, aud, iss... of the next tokens
        self.sign_with: rsa.RSAPrivateKey | None = None  # another key, same kid: a forgery
        self.codes: dict[str, dict[str, str]] = {}
        self.verifiers_checked = 0
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
            ]
        )

    def rotate(self) -> None:
        self.key, self.kid = _key(), f"key-{secrets.token_hex(4)}"

    async def discovery(self, _request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def jwks(self, _request: Request) -> Response:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return JSONResponse({"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]})

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID
        assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
        assert "openid" in q["scope"].split()
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "challenge": q["code_challenge"],
            "nonce": q["nonce"],
            "redirect_uri": q["redirect_uri"],
        }
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}", 302)

    async def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, 401)
        pending = self.codes.pop(str(form.get("code")), None)
        if pending is None or form.get("redirect_uri") != pending["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, 400)
        verifier = str(form.get("code_verifier"))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != pending["challenge"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
        self.verifiers_checked += 1
        return JSONResponse(
            {"access_token": "at", "token_type": "Bearer", "id_token": self.mint(pending["nonce"])}
        )

    def mint(self, nonce: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": nonce,
            **self.claims, **self.overrides,
        }  # fmt: skip
        return jwt.encode(claims, self.sign_with or self.key, algorithm="RS256", headers={"kid": self.kid})


@asynccontextmanager
async def running_idp() -> AsyncIterator[FakeIdP]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections wait in the backlog until the server serves: no start-up race
    idp = FakeIdP(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(idp.app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield idp
    finally:
        server.should_exit = True
        await task
        sock.close()
