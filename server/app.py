"""The composition root: the only place that picks backends from settings.

`create_app(settings)` wires the store (SQLite or PostgreSQL), the backplane (in-process or
Redis), the group-commit writer, the compactor and the rooms into a Starlette app whose
lifespan owns every background task.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from .backplane.local import LocalBackplane
from .backplane.ports import Backplane
from .backplane.sequencing import incarnation
from .compaction import Compactor
from .cpu_pool import CpuPool
from .errors import StoreError
from .federation.service import Federation
from .hocuspocus_endpoint import HocuspocusEndpoint
from .metrics import CONTENT_TYPE, MetricsRegistry
from .persistence import UpdateWriter
from .rooms import RoomManager
from .settings import Settings
from .store.ports import Store
from .ywebsocket_endpoint import YWebsocketEndpoint

__all__ = ["Services", "build_services", "create_app"]

log = logging.getLogger(__name__)

AWARENESS_SWEEP_SECONDS = 3.0  # as often as y-protocols checks for outdated states
READINESS_TIMEOUT = 2.0


@dataclass(slots=True)
class Services:
    settings: Settings
    node: str
    store: Store
    backplane: Backplane
    writer: UpdateWriter
    compactor: Compactor
    rooms: RoomManager
    metrics: MetricsRegistry
    federation: Federation | None
    cpu: CpuPool


def _make_store(settings: Settings) -> Store:
    if settings.database_url:
        from .store.postgres import PostgresStore

        return PostgresStore(settings.database_url)
    from .store.sqlite import SQLiteStore

    return SQLiteStore(settings.data_dir / "samen.sqlite3", settings.sqlite_synchronous)


def _make_backplane(settings: Settings, node: str) -> Backplane:
    if settings.redis_url:
        from .backplane.redis import RedisBackplane

        return RedisBackplane(settings.redis_url, settings.redis_prefix, node)
    return LocalBackplane(node)


def _make_federation(
    settings: Settings,
    store: Store,
    rooms: RoomManager,
    writer: UpdateWriter,
    backplane: Backplane,
    compactor: Compactor,
) -> Federation | None:
    if not settings.site_id:
        return None
    from .federation.identity import load_identity
    from .federation.lease import LeaseManager, LocalLeases, PostgresLeases
    from .federation.peers import load_peers

    identity = load_identity(settings.site_id, Path(settings.site_key))
    peers = load_peers(Path(settings.peers_file), settings.site_id)
    leases: LeaseManager = PostgresLeases(settings.database_url) if settings.database_url else LocalLeases()
    return Federation(
        identity,
        peers,
        store,
        rooms,
        writer,
        backplane,
        leases,
        compactor=compactor,
        accept_max_frame=settings.max_message_size,
    )


def build_services(settings: Settings) -> Services:
    """Raises `ConfigError` for settings that name unreadable keys or peers files."""
    node = incarnation(settings.node_id or f"{socket.gethostname()}-{os.getpid()}")
    metrics = MetricsRegistry()
    store = _make_store(settings)
    backplane = _make_backplane(settings, node)
    writer = UpdateWriter(store, on_batch=metrics.store_write_seconds.observe)
    cpu = CpuPool()
    compactor = Compactor(store, settings.compact_after, merge=cpu.compact_blocking)
    rooms = RoomManager(store, writer, compactor, backplane, metrics.counters, cpu=cpu)
    federation = _make_federation(settings, store, rooms, writer, backplane, compactor)
    if federation is not None:
        metrics.add_live(federation.metric_families)
    services = Services(settings, node, store, backplane, writer, compactor, rooms, metrics, federation, cpu)
    metrics.add_live(lambda: _live_metrics(services))
    return services


class SamenApp:
    """The ASGI entry point. Client WebSockets go straight to their endpoint: a socket that
    lives for hours need not keep Starlette's middleware and router frames alive (about
    4 KiB per connection). Everything else, lifespan included, is the Starlette app."""

    def __init__(
        self, app: Starlette, ywebsocket: YWebsocketEndpoint, hocuspocus: HocuspocusEndpoint
    ) -> None:
        self.app = app
        self._ywebsocket = ywebsocket
        self._hocuspocus = hocuspocus

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path: str = scope["path"]
            if path.startswith("/ws/"):
                return await self._ywebsocket.serve(WebSocket(scope, receive, send))
            if path == "/hocuspocus" or path.startswith("/hocuspocus/"):
                return await self._hocuspocus.serve(WebSocket(scope, receive, send))
        await self.app(scope, receive, send)


def create_app(settings: Settings) -> SamenApp:
    services = build_services(settings)
    counters = services.metrics.counters
    ywebsocket = YWebsocketEndpoint(settings, services.rooms, counters)
    hocuspocus = HocuspocusEndpoint(settings, services.rooms, counters)

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_request: Request) -> Response:
        problems = await _readiness_problems(services)
        status = 503 if problems else 200
        return JSONResponse({"ready": not problems, "node": services.node, "problems": problems}, status)

    async def metrics(_request: Request) -> Response:
        return Response(services.metrics.exposition(), media_type=CONTENT_TYPE)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]
    if services.federation is not None:
        routes.append(WebSocketRoute("/federation", services.federation.accept))
    if settings.debug_hooks:
        routes.extend(_debug_routes(services))
    app = Starlette(routes=routes, lifespan=lambda _app: _lifespan(services))
    return SamenApp(app, ywebsocket, hocuspocus)


def _debug_routes(services: Services) -> list[Route]:
    """Test hooks, only with SAMEN_DEBUG_HOOKS: they break things on purpose."""

    async def drop_backplane_updates(request: Request) -> Response:
        count = int(request.query_params.get("count", "1"))
        services.backplane.drop_next_received(count)
        log.warning("debug hook: the next %d backplane updates received will be dropped", count)
        return JSONResponse({"dropping": count})

    async def switch_link(request: Request) -> Response:
        peer, action = request.path_params["peer"], request.path_params["action"]
        federation = services.federation
        if federation is None or peer not in federation.config.peers or action not in {"block", "unblock"}:
            return JSONResponse({"error": f"no link to {peer!r} or unknown action {action!r}"}, 404)
        if action == "block":
            await federation.block(peer)
        else:
            federation.unblock(peer)
        log.warning("debug hook: link to %s: %s", peer, action)
        return JSONResponse({"peer": peer, "blocked": action == "block"})

    async def want_document(request: Request) -> Response:
        peer, document = request.path_params["peer"], request.query_params.get("doc", "")
        if services.federation is None or not services.federation.request_document(peer, document):
            return JSONResponse({"error": f"no live link to {peer!r} on this node"}, 409)
        return JSONResponse({"peer": peer, "requested": document})

    return [
        Route("/debug/drop-backplane-updates", drop_backplane_updates, methods=["POST"]),
        Route("/debug/links/{peer}/want", want_document, methods=["POST"]),
        Route("/debug/links/{peer}/{action}", switch_link, methods=["POST"]),
    ]


async def _readiness_problems(services: Services) -> list[str]:
    problems = []
    try:
        async with asyncio.timeout(READINESS_TIMEOUT):
            await services.store.ping()
    except (StoreError, TimeoutError, OSError) as exc:
        problems.append(f"store: {exc or 'timeout'}")
    if not services.backplane.connected:
        problems.append("backplane: disconnected")
    if services.writer.failures_in_a_row:
        problems.append(f"store writes failing ({services.writer.queue_depth} updates waiting)")
    return problems


@asynccontextmanager
async def _lifespan(services: Services) -> AsyncIterator[None]:
    settings = services.settings
    await services.store.open()
    services.cpu.start()
    try:
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(services.writer.run(), name="update-writer"),
                tasks.create_task(services.compactor.run(), name="compactor"),
                tasks.create_task(services.backplane.run(), name="backplane"),
                tasks.create_task(services.rooms.run_repairs(), name="repairs"),
                tasks.create_task(_housekeeping(services), name="housekeeping"),
            ]
            if services.federation is not None:
                background.append(tasks.create_task(services.federation.run(), name="federation"))
            log.info("samen node %s serving on %s:%d", services.node, settings.host, settings.port)
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
        await asyncio.to_thread(services.cpu.shutdown)
        await services.backplane.close()
        await services.store.close()
        log.info("samen node %s stopped", services.node)


async def _housekeeping(services: Services) -> None:
    while True:
        await asyncio.sleep(AWARENESS_SWEEP_SECONDS)
        services.rooms.expire_awareness(services.settings.awareness_timeout)
        services.rooms.write_stale_unconfirmed()


def _live_metrics(services: Services) -> Iterator[Metric]:
    writer, backplane, rooms = services.writer, services.backplane, services.rooms
    yield GaugeMetricFamily("samen_rooms_open", "Documents open on this node", value=len(rooms.rooms))
    yield CounterMetricFamily("samen_room_loads", "Documents loaded from the store", value=rooms.loads)
    yield GaugeMetricFamily(
        "samen_store_queue_depth", "Updates waiting to be written", value=writer.queue_depth
    )
    yield CounterMetricFamily("samen_store_rows_written", "Update rows committed", value=writer.rows_written)
    yield CounterMetricFamily(
        "samen_store_write_failures", "Failed store writes (retried)", value=writer.failures
    )
    yield CounterMetricFamily(
        "samen_compactions", "Logs merged into snapshots", value=services.compactor.compactions
    )
    stats = backplane.stats
    yield GaugeMetricFamily(
        "samen_backplane_connected", "1 if the backplane is up", value=int(backplane.connected)
    )
    yield CounterMetricFamily("samen_backplane_published", "Messages published", value=stats.published)
    yield CounterMetricFamily("samen_backplane_received", "Messages received", value=stats.received)
    yield CounterMetricFamily(
        "samen_backplane_publish_failures", "Messages lost to publish errors", value=stats.publish_failures
    )
    yield CounterMetricFamily("samen_backplane_reconnects", "Backplane reconnections", value=stats.reconnects)
    yield CounterMetricFamily(
        "samen_gap_repairs", "Documents repaired after missed messages", value=rooms.gap_repairs
    )
    unconfirmed = sum(room.unconfirmed for room in rooms.rooms.values())
    yield GaugeMetricFamily(
        "samen_unconfirmed_remote_updates",
        "Updates from other nodes not yet confirmed durable",
        value=unconfirmed,
    )
