"""The REST application mounted at /api/v1 (server/app.py mounts it; client WebSockets
never pass through it).

A router is a function `router(ctx: ApiContext) -> APIRouter` (see api/context.py for how a
route gets its caller); add yours to ROUTERS, or pass `routers=` to `create_api`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import APIRouter, FastAPI

from . import (
    audit_routes,
    oidc_routes,
    page_routes,
    people_routes,
    session_routes,
    space_routes,
    thread_routes,
    token_routes,
)
from .context import ApiContext
from .errors import install_error_handlers
from .limits import BodyLimit

__all__ = ["ROUTERS", "Router", "create_api"]

Router = Callable[[ApiContext], APIRouter]

ROUTERS: tuple[Router, ...] = (
    session_routes.router,
    people_routes.router,
    token_routes.router,
    oidc_routes.router,
    audit_routes.router,
    space_routes.router,
    page_routes.router,
    thread_routes.router,
)


def create_api(ctx: ApiContext, routers: Sequence[Router] = ROUTERS) -> FastAPI:
    api = FastAPI(
        title="Samen",
        version="1",
        summary="People, credentials, spaces and pages (later threads) of a Samen site",
        openapi_url="/openapi.json",
        docs_url=None,  # no Swagger UI: it loads scripts from a CDN
        redoc_url=None,
    )
    install_error_handlers(api)
    api.add_middleware(BodyLimit)
    for make in routers:
        api.include_router(make(ctx))
    return api
