"""Test hooks, only with SAMEN_DEBUG_HOOKS: they break things on purpose.

They wrap the real components instead of living on the ports: a backplane that can drop
the next few updates it receives, and routes that cut a site link or ask a peer for a
document.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol.backplane import BackplaneKind, BackplaneMessage

from .backplane.ports import Backplane, MessageHandler, ReconnectHandler

if TYPE_CHECKING:
    from .app import Services

__all__ = ["DroppingBackplane", "debug_routes"]

log = logging.getLogger(__name__)


class DroppingBackplane:
    """A backplane whose receiver can be told to lose the next `count` update messages."""

    def __init__(self, inner: Backplane) -> None:
        self._inner = inner
        self.node = inner.node
        self.stats = inner.stats
        self.dropping = 0
        self.dropped = 0

    @property
    def connected(self) -> bool:
        return self._inner.connected

    def set_handlers(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        def receive(name: str, message: BackplaneMessage) -> None:
            if self.dropping and message.kind == BackplaneKind.UPDATE:
                self.dropping -= 1
                self.dropped += 1
                log.warning(
                    "test hook: dropped backplane update %s#%d on %r", message.origin, message.seq, name
                )
                return
            on_message(name, message)

        self._inner.set_handlers(receive, on_reconnect)

    async def run(self) -> None:
        await self._inner.run()

    async def subscribe(self, name: str) -> None:
        await self._inner.subscribe(name)

    def unsubscribe(self, name: str) -> None:
        self._inner.unsubscribe(name)

    def publish(self, name: str, kind: BackplaneKind, payload: bytes = b"", target: str = "") -> int:
        return self._inner.publish(name, kind, payload, target)

    def mark_durable(self, name: str, seq: int) -> None:
        self._inner.mark_durable(name, seq)

    async def close(self) -> None:
        await self._inner.close()


def debug_routes(services: Services) -> list[Route]:
    async def drop_backplane_updates(request: Request) -> Response:
        backplane = services.backplane
        if not isinstance(backplane, DroppingBackplane):
            return JSONResponse({"error": "the backplane hook is not installed"}, 409)
        count = int(request.query_params.get("count", "1"))
        backplane.dropping += count
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
