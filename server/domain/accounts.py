"""What admins, people and the CLI do with accounts and credentials, each as one unit: the
change, its audit entry (one transaction), then the revocation that makes running nodes
check the affected sessions again. The REST routers and the CLI both call these, so a
suspension means the same wherever it is made.

`actor` is the person id of whoever acts ("cli" for the command line), `address` where the
request came from.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from protocol.backplane import Revocation

from ..auth.ratelimit import SignInLimiter
from ..db import Database
from .audit import AuditLog
from .errors import Conflict, DomainError, Invalid, Refused
from .people import People, Person, check_email, check_name
from .revocations import Revocations
from .tokens import ApiTokens, TokenInfo
from .web_sessions import WebSessions

__all__ = ["Accounts", "RateLimited", "WrongCredentials"]

log = logging.getLogger(__name__)


class WrongCredentials(DomainError):
    status = 401


class RateLimited(DomainError):
    status = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__("rate_limited", "too many failed sign-ins; try again later")
        self.retry_after = retry_after


@dataclass(slots=True)
class Accounts:
    db: Database
    people: People
    tokens: ApiTokens
    sessions: WebSessions
    audit: AuditLog
    revocations: Revocations
    limiter: SignInLimiter

    # -- people --------------------------------------------------------------------------

    async def add_person(
        self,
        name: str,
        *,
        actor: str,
        address: str = "",
        site_role: str = "member",
        email: str = "",
        display_name: str = "",
        password: str | None = None,
    ) -> Person:
        async with self.db.transaction():
            person = await self.people.add(
                name, site_role=site_role, email=email, display_name=display_name, password=password
            )
            await self.audit.record(
                "person_created",
                actor=actor,
                target=person.id,
                address=address,
                detail={"site_role": site_role},
            )
        return person

    async def set_suspended(self, name: str, suspended: bool, *, actor: str, address: str = "") -> Person:
        async with self.db.transaction():
            person = await self.people.require(name)
            if suspended and person.site_role == "admin" and not person.suspended:
                await self._keep_an_admin()
            person = await self.people.set_suspended(name, suspended)
            if suspended:
                await self.sessions.end_all_of(name)
            action = "person_suspended" if suspended else "person_unsuspended"
            await self.audit.record(action, actor=actor, target=person.id, address=address)
        if suspended:
            await self.revocations.record(Revocation(principal=person.id))
        return person

    async def set_site_role(self, name: str, role: str, *, actor: str, address: str = "") -> Person:
        async with self.db.transaction():
            current = await self.people.require(name)
            if current.site_role == "admin" and role != "admin" and not current.suspended:
                await self._keep_an_admin()
            person, before = await self.people.set_site_role(name, role)
            await self.audit.record(
                "site_role_changed", actor=actor, target=person.id, address=address,
                detail={"from": before, "to": role},
            )  # fmt: skip
        if before != role:
            await self.revocations.record(Revocation(principal=person.id))
        return person

    async def _keep_an_admin(self) -> None:
        if await self.people.count_admins() <= 1:
            raise Conflict("last_admin", "this is the last active site admin")

    # -- tokens --------------------------------------------------------------------------

    async def create_token(
        self,
        name: str,
        *,
        actor: str,
        address: str = "",
        scope: str = "write",
        lifetime: float | None = 90 * 86400.0,
        label: str = "",
    ) -> tuple[TokenInfo, str]:
        async with self.db.transaction():
            person = await self.people.require(name)
            info, token = await self.tokens.create(name, scope=scope, lifetime=lifetime, label=label)
            await self.audit.record(
                "token_created", actor=actor, target=person.id, address=address,
                detail={"token": info.id, "scope": scope, "expires_at": info.expires_at},
            )  # fmt: skip
        return info, token

    async def revoke_token(self, token_id: str, *, actor: str, address: str = "") -> TokenInfo:
        async with self.db.transaction():
            info = await self.tokens.revoke(token_id)
            owner = self.people.person_id(info.person)
            await self.audit.record(
                "token_revoked", actor=actor, target=owner, address=address, detail={"token": info.id}
            )
        await self.revocations.record(Revocation(principal=owner, token=info.id))
        return info

    # -- sign-in ---------------------------------------------------------------------------

    async def sign_in(self, name: str, password: str, address: str) -> tuple[Person, str]:
        """A new browser session for `name`; returns the person and the cookie value.
        Raises RateLimited (before any password is checked), WrongCredentials or Refused."""
        wait = self.limiter.retry_after(name, address)
        if wait > 0:
            # Not audited one by one: a flood of refused attempts must not fill the table.
            log.warning("sign-in of %r from %s refused: rate-limited", name[:64], address)
            raise RateLimited(wait)
        person = await self.people.check_password(name, password)
        if person is None:
            self.limiter.failed(name, address)
            await self.audit.record(
                "sign_in_failed",
                target=self.people.person_id(name),
                address=address,
                detail={"why": "password"},
            )
            raise WrongCredentials("wrong_credentials", "wrong name or password")
        self.limiter.succeeded(name)
        if person.suspended:
            await self.audit.record(
                "sign_in_failed", target=person.id, address=address, detail={"why": "suspended"}
            )
            raise Refused("account_suspended", "this account is suspended")
        return person, await self.open_session(person, address, "sign_in")

    async def open_session(self, person: Person, address: str, action: str) -> str:
        async with self.db.transaction():
            _session, secret = await self.sessions.create(person.name, address)
            await self.audit.record(action, actor=person.id, target=person.id, address=address)
        return secret

    async def sign_out(self, secret: str, address: str) -> None:
        name = await self.sessions.end(secret)
        if name is None:
            return
        person_id = self.people.person_id(name)
        await self.audit.record("sign_out", actor=person_id, target=person_id, address=address)
        # That cookie's WebSockets close; the person's other sessions pass the check again.
        await self.revocations.record(Revocation(principal=person_id))

    async def sign_in_with_idp(
        self, claims: Mapping[str, Any], *, issuer: str, groups_claim: str, default_role: str, address: str
    ) -> tuple[Person, str]:
        """A new browser session for the person the verified ID token `claims` name: the
        account linked to (issuer, sub), else a new one (or a pre-created one without a
        password or link, of the same name). Name, e-mail and groups follow the claims."""
        subject = f"{issuer} {claims['sub']}"
        groups = claims.get(groups_claim, [])
        groups = [g for g in groups if isinstance(g, str)][:200] if isinstance(groups, list) else []
        email = str(claims.get("email", ""))
        email = email if _valid(check_email, email) else ""
        display = _CONTROL.sub("", str(claims.get("name", "")))[:128]
        async with self.db.transaction():
            person = await self.people.by_oidc_subject(subject)
            if person is None:
                name = idp_name(claims)
                existing = await self.people.get(name)
                if existing is None:
                    person = await self.people.add(
                        name, site_role=default_role, email=email, display_name=display,
                        oidc_subject=subject, idp_groups=groups,
                    )  # fmt: skip
                    await self.audit.record(
                        "person_created", actor=person.id, target=person.id, address=address,
                        detail={"site_role": default_role, "via": "oidc"},
                    )  # fmt: skip
                elif existing.has_password or await self.people.oidc_subject_of(name) is not None:
                    raise Conflict(
                        "name_taken", f"the name {name!r} belongs to another account; ask an admin"
                    )
                else:
                    await self.people.link_oidc(name, subject)
                    person = existing
            if person.suspended:
                await self.audit.record(
                    "oidc_sign_in_failed", target=person.id, address=address, detail={"why": "suspended"}
                )
                raise Refused("account_suspended", "this account is suspended")
            changed_groups = tuple(groups) != person.idp_groups
            person = await self.people.update_from_idp(
                person.name, email=email, display_name=display, groups=groups
            )
            secret = await self.open_session(person, address, "oidc_sign_in")
        if changed_groups:
            # Space roles may follow the groups: live sessions are checked again.
            await self.revocations.record(Revocation(principal=person.id))
        return person, secret


def idp_name(claims: Mapping[str, Any]) -> str:
    """A Samen name from the IdP's claims: preferred_username, else the e-mail's local part,
    else the subject; lower-cased, other characters replaced by '-'."""
    raw = str(
        claims.get("preferred_username") or str(claims.get("email", "")).partition("@")[0] or claims["sub"]
    )
    name = re.sub(r"[^a-z0-9._-]+", "-", raw.lower()).strip("._-")[:64].strip("._-")
    try:
        return check_name(name)
    except Invalid:
        raise Invalid("invalid_name", "the identity provider gave no usable name") from None


def _valid(check: Callable[[str], str], value: str) -> bool:
    try:
        check(value)
    except Invalid:
        return False
    return True


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
