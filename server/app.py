"""The composition root: the only place that picks backends from settings.

`create_app(settings)` wires the store, the group-commit writer, the compactor and the
rooms into a Starlette app whose lifespan owns every background task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from .compaction import Compactor
from .hocuspocus_endpoint import HocuspocusEndpoint
from .persistence import UpdateWriter
from .rooms import RoomManager
from .settings import Settings
from .store.ports import DocumentStore
from .store.sqlite import SQLiteStore
from .ywebsocket_endpoint import YWebsocketEndpoint

__all__ = ["Services", "create_app"]

log = logging.getLogger(__name__)

AWARENESS_SWEEP_SECONDS = 3.0  # as often as y-protocols checks for outdated states


@dataclass(slots=True)
class Services:
    settings: Settings
    store: DocumentStore
    writer: UpdateWriter
    compactor: Compactor
    rooms: RoomManager


def build_services(settings: Settings) -> Services:
    store = SQLiteStore(settings.data_dir / "samen.sqlite3", settings.sqlite_synchronous)
    writer = UpdateWriter(store)
    compactor = Compactor(store, settings.compact_after)
    rooms = RoomManager(store, writer, compactor)
    return Services(settings, store, writer, compactor, rooms)


def create_app(settings: Settings) -> Starlette:
    services = build_services(settings)
    ywebsocket = YWebsocketEndpoint(settings, services.rooms)
    hocuspocus = HocuspocusEndpoint(settings, services.rooms)

    async def healthz(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            WebSocketRoute("/ws/{name:path}", ywebsocket.serve),
            WebSocketRoute("/hocuspocus", hocuspocus.serve),
            WebSocketRoute("/hocuspocus/{rest:path}", hocuspocus.serve),
        ],
        lifespan=lambda _app: _lifespan(services),
    )
    app.state.services = services
    return app


@asynccontextmanager
async def _lifespan(services: Services) -> AsyncIterator[None]:
    settings = services.settings
    await services.store.open()
    try:
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(services.writer.run(), name="update-writer"),
                tasks.create_task(services.compactor.run(), name="compactor"),
                tasks.create_task(_sweep_awareness(services), name="awareness-sweeper"),
            ]
            log.info("samen serving on %s:%d, data in %s", settings.host, settings.port, settings.data_dir)
            try:
                yield
            finally:
                # Connections are closed by now; write what they left behind, then stop.
                try:
                    async with asyncio.timeout(settings.shutdown_timeout):
                        await services.writer.drain()
                except TimeoutError:
                    log.error(
                        "shutdown: %d updates could not be written in %.0fs",
                        services.writer.queue_depth,
                        settings.shutdown_timeout,
                    )
                for task in background:
                    task.cancel()
    finally:
        await services.store.close()
        log.info("samen stopped")


async def _sweep_awareness(services: Services) -> None:
    while True:
        await asyncio.sleep(AWARENESS_SWEEP_SECONDS)
        services.rooms.expire_awareness(services.settings.awareness_timeout)
