"""The JSON shapes of the people-and-credentials API (pydantic: validation and OpenAPI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..auth.authenticator import Identity
from ..domain.audit import AuditEntry
from ..domain.people import Person
from ..domain.tokens import TokenInfo

__all__ = [
    "AuditPage",
    "MeOut",
    "PeoplePage",
    "PersonCreate",
    "PersonOut",
    "PersonPatch",
    "SignIn",
    "SignedIn",
    "TokenCreate",
    "TokenCreated",
    "TokenOut",
]

SiteRole = Literal["admin", "community-manager", "member", "guest"]
Scope = Literal["read", "write"]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignIn(Input):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class PersonCreate(Input):
    name: str = Field(min_length=1, max_length=64, description="a-z, 0-9, '.', '_', '-'")
    site_role: SiteRole = "member"
    email: str = Field(default="", max_length=254)
    display_name: str = Field(default="", max_length=128)
    password: str | None = Field(default=None, min_length=8, max_length=1024)


class PersonPatch(Input):
    site_role: SiteRole | None = None
    suspended: bool | None = None


class TokenCreate(Input):
    scope: Scope = "write"
    expires_in: str | None = Field(default="90d", max_length=16, description="e.g. 30d, 12h, 2w; null: never")
    label: str = Field(default="", max_length=100)
    person: str | None = Field(default=None, max_length=64, description="admins only: the owner's name")


class PersonOut(BaseModel):
    id: str = Field(description='"name@site": what documents and messages carry as author')
    name: str
    site_role: SiteRole
    email: str
    display_name: str
    suspended: bool
    created_at: float

    @classmethod
    def of(cls, person: Person) -> PersonOut:
        return cls(
            id=person.id, name=person.name, site_role=person.site_role,  # type: ignore[arg-type]
            email=person.email, display_name=person.display_name, suspended=person.suspended,
            created_at=person.created_at,
        )  # fmt: skip


class MeOut(PersonOut):
    site: str
    via: Literal["cookie", "token"]
    token_id: str | None = None
    scope: Scope
    csrf_token: str | None = Field(default=None, description="send as X-CSRF-Token on state-changing calls")

    @classmethod
    def of_identity(cls, identity: Identity, site: str, csrf: str | None) -> MeOut:
        base = PersonOut.of(identity.person).model_dump()
        return cls(
            **base, site=site, via=identity.via,  # type: ignore[arg-type]
            token_id=identity.token.id if identity.token else None,
            scope=identity.principal.scope,  # type: ignore[arg-type]
            csrf_token=csrf,
        )  # fmt: skip


class SignedIn(BaseModel):
    person: PersonOut
    csrf_token: str


class PeoplePage(BaseModel):
    people: list[PersonOut]
    next_after: str | None = Field(description="pass as ?after= for the next page; null on the last")


class TokenOut(BaseModel):
    id: str
    person: str
    label: str
    scope: Scope
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None

    @classmethod
    def of(cls, info: TokenInfo, person_id: str) -> TokenOut:
        return cls(
            id=info.id, person=person_id, label=info.label, scope=info.scope,  # type: ignore[arg-type]
            created_at=info.created_at, expires_at=info.expires_at, revoked_at=info.revoked_at,
            last_used_at=info.last_used_at,
        )  # fmt: skip


class TokenCreated(TokenOut):
    token: str = Field(description="the token itself: shown this once, never again")


class AuditEntryOut(BaseModel):
    seq: int
    at: float
    site: str
    actor: str
    action: str
    target: str
    address: str
    detail: dict[str, object]

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(
            seq=entry.seq, at=entry.at, site=entry.site, actor=entry.actor, action=entry.action,
            target=entry.target, address=entry.address, detail=entry.detail,
        )  # fmt: skip


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_before: int | None = Field(
        description="pass as ?before= for the next (older) page; null on the last"
    )
