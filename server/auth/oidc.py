"""OpenID Connect sign-in: the authorization code flow with PKCE (S256), against the
identity provider named by SAMEN_OIDC_ISSUER.

1. `start(redirect_uri, return_to)`: a random state, nonce and PKCE verifier, kept in the
   `oidc_logins` table (any node may receive the callback) for ten minutes; returns the
   provider's authorization URL and the state (which the caller also binds to the browser
   with a short cookie, so nobody can make a victim finish the attacker's sign-in).
2. `finish(state, code, redirect_uri)`: takes the pending login (once), exchanges the code
   at the token endpoint (with the client secret and the verifier), and verifies the ID
   token: signature by a key of the provider's JWKS (asymmetric algorithms only), issuer,
   audience (and `azp` when there are several), expiry, issue time and nonce. Returns its
   claims.

Discovery (`/.well-known/openid-configuration`) and the JWKS are cached; a token signed with
a key id the cache lacks refreshes the JWKS once (providers rotate keys), at most every
`JWKS_MIN_REFRESH` seconds, so forged key ids cannot make Samen hammer the provider.
Verification is PyJWT's (with cryptography); nothing here is hand-rolled crypto.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from ..db import Database
from ..domain.errors import DomainError

__all__ = ["OidcClient", "OidcConfig", "OidcError"]

log = logging.getLogger(__name__)

LOGIN_LIFETIME = 600.0
JWKS_MIN_REFRESH = 10.0
METADATA_LIFETIME = 3600.0
CLOCK_SKEW = 60  # seconds of leeway on exp/iat/nbf
_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_MAX_RESPONSE = 1024 * 1024


class OidcError(DomainError):
    """The provider's answer cannot be used (a bad ID token, an unknown state...)."""

    status = 401


@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    scopes: str = "openid profile email"
    groups_claim: str = "groups"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


class OidcClient:
    def __init__(
        self,
        config: OidcConfig,
        db: Database,
        http: Callable[[], httpx.AsyncClient] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._db = db
        self._http = http or (lambda: httpx.AsyncClient(timeout=10.0, trust_env=False))
        self._clock = clock
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_at = -JWKS_MIN_REFRESH
        self.jwks_min_refresh = JWKS_MIN_REFRESH

    # -- the provider's documents --------------------------------------------------------

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._http() as http:
                response = await http.get(url)
        except httpx.HTTPError as exc:
            raise OidcError("idp_unavailable", f"the identity provider cannot be reached: {exc}") from exc
        return _json_object(response, url)

    async def metadata(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._metadata is None or now - self._metadata_at > METADATA_LIFETIME:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            metadata = await self._get_json(url)
            if metadata.get("issuer") != self.config.issuer:
                raise OidcError("idp_misconfigured", "the provider's metadata names another issuer")
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(metadata.get(key), str):
                    raise OidcError("idp_misconfigured", f"the provider's metadata lacks {key}")
            self._metadata, self._metadata_at = metadata, now
        return self._metadata

    async def _key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid) if kid else self._only_key()
        if key is not None:
            return key
        now = time.monotonic()
        if now - self._keys_at >= self.jwks_min_refresh:
            self._keys_at = now
            jwks = await self._get_json((await self.metadata())["jwks_uri"])
            try:
                keys = jwt.PyJWKSet.from_dict(jwks)
            except jwt.PyJWTError as exc:
                raise OidcError("idp_misconfigured", f"the provider's JWKS is unusable: {exc}") from exc
            # Asymmetric keys only: an "oct" key would let whoever knows it sign anything.
            usable = [k for k in keys if k._jwk_data.get("kty") in {"RSA", "EC", "OKP"}]
            self._keys = {k.key_id or "": k for k in usable}
            key = self._keys.get(kid) if kid else self._only_key()
        if key is None:
            raise OidcError("invalid_id_token", "the ID token is signed with an unknown key")
        return key

    def _only_key(self) -> jwt.PyJWK | None:
        """A token without a key id is accepted only from a provider with one key."""
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    # -- the flow ------------------------------------------------------------------------

    async def start(self, redirect_uri: str, return_to: str) -> tuple[str, str]:
        """The provider's authorization URL and the state to bind to the browser."""
        metadata = await self.metadata()
        state, nonce, verifier = (
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(48),
        )
        now = self._clock()
        await self._db.execute("DELETE FROM oidc_logins WHERE expires_at <= $1", now)
        await self._db.execute(
            "INSERT INTO oidc_logins (state_hash, verifier, nonce, return_to, expires_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            _digest(state), verifier, nonce, return_to, now + LOGIN_LIFETIME,
        )  # fmt: skip
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.config.scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": _b64(hashlib.sha256(verifier.encode("ascii")).digest()),
                "code_challenge_method": "S256",
            }
        )
        endpoint: str = metadata["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", state

    async def finish(self, state: str, code: str, redirect_uri: str) -> tuple[dict[str, Any], str]:
        """The verified claims of the ID token, and where the person wanted to go."""
        async with self._db.transaction():
            row = await self._db.fetchrow(
                "SELECT verifier, nonce, return_to, expires_at FROM oidc_logins WHERE state_hash = $1",
                _digest(state),
            )
            await self._db.execute("DELETE FROM oidc_logins WHERE state_hash = $1", _digest(state))
        if row is None or row["expires_at"] <= self._clock():
            raise OidcError("invalid_state", "this sign-in was not started here, or took too long; try again")
        tokens = await self._exchange(code, redirect_uri, row["verifier"])
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("invalid_id_token", "the provider answered without an ID token")
        return await self.verify(id_token, row["nonce"]), str(row["return_to"])

    async def _exchange(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": self.config.client_id,
        }
        auth = httpx.BasicAuth(self.config.client_id, self.config.client_secret)
        try:
            async with self._http() as http:
                response = await http.post(metadata["token_endpoint"], data=form, auth=auth)
        except httpx.HTTPError as exc:
            raise OidcError("idp_unavailable", f"the identity provider cannot be reached: {exc}") from exc
        if response.status_code != 200:
            raise OidcError(
                "code_refused", f"the identity provider refused the code ({response.status_code})"
            )
        return _json_object(response, "the token endpoint")

    async def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise OidcError("invalid_id_token", f"the ID token is malformed: {exc}") from exc
        algorithm = header.get("alg")
        if algorithm not in _ALGORITHMS:
            raise OidcError("invalid_id_token", "the ID token is not signed with an accepted algorithm")
        key = await self._key(str(header.get("kid", "")))
        if key.algorithm_name != algorithm and key._jwk_data.get("alg") not in (None, algorithm):
            raise OidcError("invalid_id_token", "the ID token's algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key.key,
                algorithms=[algorithm],
                audience=self.config.client_id,
                issuer=self.config.issuer,
                leeway=CLOCK_SKEW,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise OidcError("invalid_id_token", f"the ID token was refused: {exc}") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.config.client_id:
            raise OidcError("invalid_id_token", "the ID token was issued to another party (azp)")
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise OidcError("invalid_id_token", "the ID token's nonce does not match this sign-in")
        return claims


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    if len(response.content) > _MAX_RESPONSE:
        raise OidcError("idp_misconfigured", f"{what} answered with too much")
    try:
        value = response.json()
    except ValueError:
        value = None
    if response.status_code != 200 or not isinstance(value, dict):
        raise OidcError(
            "idp_misconfigured", f"{what} did not answer with a JSON object ({response.status_code})"
        )
    return value
