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
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from crdt.awareness import AwarenessLimits

from .admission import Admission, Refusal
from .api.app import create_api
from .api.context import ApiContext
from .auth.authorizer import SpaceAuthorizer
from .auth.ports import AllowAll, Authenticator, Authorizer
from .auth.service import AuthServices, build_auth
from .backplane.local import LocalBackplane
from .backplane.ports import Backplane
from .backplane.sequencing import incarnation
from .compaction import Compactor
from .control import ControlChannels
from .cpu_pool import CpuPool
from .debug import DroppingBackplane, debug_routes
from .domain.page_service import PageService
from .domain.page_store import PageStore
from .domain.pages import refuse_client_index_writes
from .domain.space_service import PeopleDirectory, SpaceService
from .domain.threads import ThreadService
from .errors import StoreError
from .federation.handshake import FEDERATION_PATH
from .federation.service import Federation
from .hocuspocus_endpoint import HocuspocusEndpoint
from .hooks import Hooks
from .live_metrics import node_metrics
from .metrics import CONTENT_TYPE, MetricsRegistry
from .persistence import UpdateWriter
from .registry import SessionRegistry
from .rooms import RoomManager
from .sender import SendAccounting
from .settings import Settings
from .socket_loop import EndpointServices
from .store.ports import Store
from .thread_guard import ThreadGuard
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
    hooks: Hooks
    rooms: RoomManager
    authenticator: Authenticator
    authorizer: Authorizer
    registry: SessionRegistry
    metrics: MetricsRegistry
    federation: Federation | None
    cpu: CpuPool
    auth: AuthServices
    spaces: SpaceService
    pages: PageService
    threads: ThreadService
    awareness_drops: Counter[str]
    admission: Admission
    sends: SendAccounting


def _make_store(settings: Settings) -> Store:
    if settings.database_url:
        from .store.postgres import PostgresStore

        return PostgresStore(settings.database_url)
    from .store.sqlite import SQLiteStore

    return SQLiteStore(settings.data_dir / "samen.sqlite3", settings.sqlite_synchronous)


def _make_backplane(settings: Settings, node: str) -> Backplane:
    backplane: Backplane
    if settings.redis_url:
        from .backplane.redis import RedisBackplane

        backplane = RedisBackplane(settings.redis_url, settings.redis_prefix, node)
    else:
        backplane = LocalBackplane(node)
    return DroppingBackplane(backplane) if settings.debug_hooks else backplane


def _make_federation(
    settings: Settings,
    store: Store,
    rooms: RoomManager,
    writer: UpdateWriter,
    backplane: Backplane,
    compactor: Compactor,
    spaces: SpaceService,
    registry: SessionRegistry,
) -> Federation | None:
    if not settings.site_id:
        return None
    from .domain.space_federation import SpaceFederation
    from .federation.identity import load_identity
    from .federation.lease import LeaseManager, LocalLeases, PostgresLeases
    from .federation.limits import LinkLimits
    from .federation.link_tls import client_context, warn_if_insecure
    from .federation.membership import FederatedSpaces
    from .federation.peers import load_peers

    identity = load_identity(settings.site_id, Path(settings.site_key))
    peers = load_peers(
        Path(settings.peers_file), settings.site_id, allow_insecure=settings.link_allow_insecure
    )
    warn_if_insecure(
        (url for peer in peers.peers.values() for url in peer.urls), settings.link_allow_insecure
    )
    leases: LeaseManager = PostgresLeases(settings.database_url) if settings.database_url else LocalLeases()
    shared = FederatedSpaces(SpaceFederation(spaces, settings.site_id), identity, peers.scope)
    registry.add_listener(shared.on_revocation)
    if settings.auth_required:  # with SAMEN_AUTH=off every site may write everything, as locally
        rooms.hooks.add_before_apply(shared.check_update)
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
        tls=client_context(settings.link_ca_file),
        spaces=shared,
        limits=LinkLimits(
            max_update=settings.link_max_update,
            send_budget=settings.link_send_budget,
            presence_clients=settings.link_presence_clients,
            stuck_after=settings.link_stuck_after,
        ),
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
    hooks = Hooks()
    control = ControlChannels()
    awareness_drops: Counter[str] = Counter()
    rooms = RoomManager(
        store, writer, compactor, backplane, metrics.counters, hooks=hooks, control=control, cpu=cpu,
        awareness_limits=awareness_limits(settings), awareness_drops=awareness_drops,
    )  # fmt: skip
    auth = build_auth(settings, node=node)
    spaces = SpaceService(auth.db, PeopleDirectory(auth.people), auth.audit, auth.revocations)
    pages = PageService(
        spaces, rooms, auth.revocations, retention_days=settings.trash_retention_days, cpu=cpu
    )
    hooks.add_before_apply(refuse_client_index_writes)  # also with SAMEN_AUTH=off
    page_store = PageStore(auth.db)
    threads = ThreadService(auth.db, spaces, rooms, page_exists=page_store.is_live)
    authenticator: Authenticator = AllowAll()  # SAMEN_AUTH=off: anyone may write
    authorizer: Authorizer = AllowAll()
    if settings.auth_required:
        authenticator = auth.authenticator
        authorizer = SpaceAuthorizer(
            spaces.store,
            page_store,
            anonymous_read=settings.anonymous_read,
            named={"thread": threads.store.exists},
        )
        # Threads need to know who writes: without authentication anyone writes anything.
        ThreadGuard(settings.thread_clock_tolerance).install(hooks)
    registry = SessionRegistry(authenticator, authorizer, backplane, control)
    auth.revocations.on_record = registry.revoke
    federation = _make_federation(settings, store, rooms, writer, backplane, compactor, spaces, registry)
    if federation is not None:
        metrics.add_live(federation.metric_families)
    services = Services(
        settings, node, store, backplane, writer, compactor, hooks, rooms,
        authenticator, authorizer, registry, metrics, federation, cpu, auth, spaces, pages, threads,
        awareness_drops, Admission(settings), SendAccounting(settings.send_budget),
    )  # fmt: skip
    metrics.add_live(lambda: node_metrics(services))
    metrics.add_live(services.sends.metric_families)
    metrics.add_live(services.admission.metric_families)
    return services


def awareness_limits(settings: Settings) -> AwarenessLimits:
    return AwarenessLimits(
        max_entries=settings.awareness_max_entries,
        max_clients=settings.awareness_max_clients,
        max_state_bytes=settings.awareness_max_state_bytes,
        rate=settings.awareness_rate,
    )


class SamenApp:
    """The ASGI entry point. Client WebSockets go straight to their endpoint: a socket that
    lives for hours need not keep Starlette's middleware and router frames alive (about
    4 KiB per connection). Everything else, lifespan included, is the Starlette app.

    Client WebSockets are admitted first (`Admission`: per node, per address); a refused one
    gets an HTTP answer instead of the upgrade, before any endpoint work."""

    def __init__(
        self,
        app: Starlette,
        ywebsocket: YWebsocketEndpoint,
        hocuspocus: HocuspocusEndpoint,
        admission: Admission,
    ) -> None:
        self.app = app
        self._ywebsocket = ywebsocket
        self._hocuspocus = hocuspocus
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path: str = scope["path"]
            endpoint: YWebsocketEndpoint | HocuspocusEndpoint | None = None
            if path.startswith("/ws/"):
                endpoint = self._ywebsocket
            elif path == "/hocuspocus" or path.startswith("/hocuspocus/"):
                endpoint = self._hocuspocus
            if endpoint is not None:
                client = scope.get("client")
                address = client[0] if client else None
                refusal = self.admission.admit_websocket(address)
                if refusal is not None:
                    return await _refuse_upgrade(scope, receive, send, refusal)
                try:
                    return await endpoint.serve(WebSocket(scope, receive, send))
                finally:
                    self.admission.release_websocket(address)
        await self.app(scope, receive, send)


async def _refuse_upgrade(scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
    await receive()  # websocket.connect
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1013})  # the server answers 403
        return
    body = f"{refusal.message}; try again later\n".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", b"10")]
    await send({"type": "websocket.http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


def create_app(settings: Settings) -> SamenApp:
    services = build_services(settings)
    endpoint_services = EndpointServices(
        settings,
        services.rooms,
        services.authenticator,
        services.authorizer,
        services.registry,
        services.hooks,
        services.metrics.counters,
        services.sends,
    )
    ywebsocket = YWebsocketEndpoint(endpoint_services)
    hocuspocus = HocuspocusEndpoint(endpoint_services)

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_request: Request) -> Response:
        problems = await _readiness_problems(services)
        status = 503 if problems else 200
        # No node id: it holds the host name and process id (the startup log line has it).
        return JSONResponse({"ready": not problems, "problems": problems}, status)

    async def metrics(_request: Request) -> Response:
        return Response(services.metrics.exposition(), media_type=CONTENT_TYPE)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Mount(
            "/api/v1",
            app=create_api(ApiContext(services.auth, services.spaces, services.pages, services.threads)),
        ),
    ]
    if services.federation is not None:
        routes.append(WebSocketRoute(FEDERATION_PATH, services.federation.accept))
    if settings.debug_hooks:
        routes.extend(debug_routes(services))
    app = Starlette(routes=routes, lifespan=lambda _app: _lifespan(services))
    return SamenApp(app, ywebsocket, hocuspocus, services.admission)


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
    if services.federation is not None:
        problems.extend(services.federation.problems())
    return problems


@asynccontextmanager
async def _lifespan(services: Services) -> AsyncIterator[None]:
    settings = services.settings
    await services.store.open()
    try:
        await services.auth.open()
    except BaseException:
        await services.store.close()
        raise
    await services.auth.hint_first_admin()
    services.cpu.start()
    try:
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(services.writer.run(), name="update-writer"),
                tasks.create_task(services.compactor.run(), name="compactor"),
                tasks.create_task(services.backplane.run(), name="backplane"),
                tasks.create_task(services.rooms.run_repairs(), name="repairs"),
                tasks.create_task(_housekeeping(services), name="housekeeping"),
                tasks.create_task(services.hooks.feed.run(), name="change-feed"),
                tasks.create_task(services.registry.run(), name="revocations"),
                tasks.create_task(services.auth.run(services.registry.revoke_local), name="auth"),
                tasks.create_task(services.pages.run_purge(), name="page-trash"),
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
        await services.auth.close()
        await services.store.close()
        log.info("samen node %s stopped", services.node)


async def _housekeeping(services: Services) -> None:
    while True:
        await asyncio.sleep(AWARENESS_SWEEP_SECONDS)
        services.rooms.expire_awareness(services.settings.awareness_timeout)
        services.rooms.write_stale_unconfirmed()
