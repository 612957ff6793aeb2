"""Personal API tokens: created (shown once), listed and revoked by their owner or an admin."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request

from ..auth.authenticator import Identity
from ..domain.tokens import TokenInfo, parse_duration
from .context import ApiContext, address_of
from .errors import ApiError, errors
from .models import TokenCreate, TokenCreated, TokenOut

__all__ = ["router"]


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["tokens"])
    auth = ctx.auth

    def owner_for(identity: Identity, person: str | None) -> str:
        if person is None or person == identity.person.name:
            return identity.person.name
        if identity.principal.site_role != "admin":
            raise ApiError(403, "forbidden", "only site admins manage other people's tokens")
        return person

    async def owned(identity: Identity, token_id: str) -> TokenInfo:
        info = await auth.tokens.get(token_id)
        # Someone else's token reads as missing: ids are not for probing.
        if info is None or (info.person != identity.person.name and identity.principal.site_role != "admin"):
            raise ApiError(404, "token_not_found", "no such token")
        return info

    @api.get("/tokens", responses=errors(401, 403, 404, 422))
    async def list_tokens(
        person: str | None = Query(None, max_length=64, description="admins: another person's tokens"),
        identity: Identity = Depends(ctx.person),
    ) -> list[TokenOut]:
        name = owner_for(identity, person)
        owner = await auth.people.require(name)
        return [TokenOut.of(info, owner.id) for info in await auth.tokens.of(name)]

    @api.post("/tokens", status_code=201, responses=errors(400, 401, 403, 404, 422))
    async def create_token(
        body: TokenCreate, request: Request, identity: Identity = Depends(ctx.person)
    ) -> TokenCreated:
        """A new token; the answer is the only time its text is shown."""
        name = owner_for(identity, body.person)
        lifetime = parse_duration(body.expires_in) if body.expires_in is not None else None
        info, token = await auth.accounts.create_token(
            name, actor=identity.principal.id, address=address_of(request), scope=body.scope,
            lifetime=lifetime, label=body.label,
        )  # fmt: skip
        return TokenCreated(**TokenOut.of(info, auth.people.person_id(name)).model_dump(), token=token)

    @api.delete("/tokens/{token_id}", responses=errors(401, 403, 404, 422))
    async def revoke_token(
        request: Request,
        token_id: str = Path(min_length=1, max_length=32),
        identity: Identity = Depends(ctx.person),
    ) -> TokenOut:
        """Revoke a token: sessions it opened are closed at once, on every node."""
        await owned(identity, token_id)
        info = await auth.accounts.revoke_token(
            token_id, actor=identity.principal.id, address=address_of(request)
        )
        return TokenOut.of(info, auth.people.person_id(info.person))

    return api
