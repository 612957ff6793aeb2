"""The audit log, for site admins: newest first, filtered, a page at a time."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from ..auth.authenticator import Identity
from .context import ApiContext
from .errors import errors
from .models import AuditEntryOut, AuditPage

__all__ = ["router"]


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["audit"])

    @api.get("/audit", responses=errors(401, 403, 422))
    async def audit(
        actor: str = Query("", max_length=200, description='who acted ("name@site", "cli")'),
        action: str = Query("", max_length=64, description="e.g. sign_in_failed, token_revoked"),
        target: str = Query("", max_length=300, description="whom or what it concerned"),
        since: float | None = Query(None, ge=0, le=1e11, description="seconds since the epoch, inclusive"),
        until: float | None = Query(None, ge=0, le=1e11, description="seconds since the epoch, exclusive"),
        before: int | None = Query(None, ge=1, le=2**62, description="next_before of the previous page"),
        limit: int = Query(100, ge=1, le=500),
        _admin: Identity = Depends(ctx.admin),
    ) -> AuditPage:
        entries = await ctx.auth.audit.query(
            actor=actor, action=action, target=target, since=since, until=until, before=before, limit=limit
        )
        next_before = entries[-1].seq if len(entries) == limit else None
        return AuditPage(entries=[AuditEntryOut.of(e) for e in entries], next_before=next_before)

    return api
