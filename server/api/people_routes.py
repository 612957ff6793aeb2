"""People, for site admins: list, create, suspend, change the site role."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request

from ..auth.authenticator import Identity
from .context import ApiContext, address_of
from .errors import errors
from .models import PeoplePage, PersonCreate, PersonOut, PersonPatch

__all__ = ["router"]

NamePath = Path(min_length=1, max_length=64)


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["people"])
    auth = ctx.auth

    @api.get("/people", responses=errors(401, 403, 422))
    async def list_people(
        after: str = Query(
            "", max_length=64, pattern=r"^[a-z0-9._-]*$", description="the last name of the previous page"
        ),
        limit: int = Query(100, ge=1, le=500),
        _admin: Identity = Depends(ctx.admin),
    ) -> PeoplePage:
        people = await auth.people.page(after=after, limit=limit)
        next_after = people[-1].name if len(people) == limit else None
        return PeoplePage(people=[PersonOut.of(p) for p in people], next_after=next_after)

    @api.post("/people", status_code=201, responses=errors(400, 401, 403, 409, 422))
    async def create_person(
        body: PersonCreate, request: Request, admin: Identity = Depends(ctx.admin)
    ) -> PersonOut:
        person = await auth.accounts.add_person(
            body.name, actor=admin.principal.id, address=address_of(request), site_role=body.site_role,
            email=body.email, display_name=body.display_name, password=body.password,
        )  # fmt: skip
        return PersonOut.of(person)

    @api.get("/people/{name}", responses=errors(401, 403, 404, 422))
    async def get_person(name: str = NamePath, _admin: Identity = Depends(ctx.admin)) -> PersonOut:
        return PersonOut.of(await auth.people.require(name))

    @api.patch("/people/{name}", responses=errors(400, 401, 403, 404, 409, 422))
    async def change_person(
        body: PersonPatch, request: Request, name: str = NamePath, admin: Identity = Depends(ctx.admin)
    ) -> PersonOut:
        """Suspend (every session of theirs ends at once) or reinstate a person; change their site role."""
        actor, address = admin.principal.id, address_of(request)
        person = await auth.people.require(name)
        if body.site_role is not None:
            person = await auth.accounts.set_site_role(name, body.site_role, actor=actor, address=address)
        if body.suspended is not None and body.suspended != person.suspended:
            person = await auth.accounts.set_suspended(name, body.suspended, actor=actor, address=address)
        return PersonOut.of(person)

    return api
