"""The outbound half of a client socket: a bounded queue and the one task that writes it.

Rooms hand frames to `send` without waiting. A client whose queue overflows is closed with
1013 instead of being allowed to stall its room or grow without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .close_codes import CloseCode, close_reason
from .metrics import Counters

__all__ = ["SocketSender"]

log = logging.getLogger(__name__)


class SocketSender:
    """Frames queue here; a drain task owned by the connection's task group writes them.

    The drain task exists only while there is something to write: an idle connection (most
    of them, most of the time) holds no task at all, which keeps it small.
    """

    def __init__(self, websocket: WebSocket, limit: int, label: str, counters: Counters) -> None:
        self._websocket = websocket
        self._counters = counters
        self._limit = limit
        self._label = label
        self._queue: deque[bytes] = deque()
        self._close: tuple[int, str] | None = None
        self._finished = False
        self._tasks: asyncio.TaskGroup | None = None
        self._draining = False

    @property
    def closing(self) -> bool:
        return self._close is not None or self._finished

    def bind(self, tasks: asyncio.TaskGroup) -> None:
        """Start writing, in tasks of `tasks` (the connection's group, which waits for them)."""
        self._tasks = tasks
        self._kick()

    def send(self, frame: bytes) -> None:
        if self.closing:
            return
        if len(self._queue) >= self._limit:
            log.warning("%s: %d frames queued, client too slow; closing", self._label, len(self._queue))
            self._queue.clear()
            self._counters.slow_clients_closed += 1
            self.close(CloseCode.TRY_AGAIN_LATER, "client too slow")
            return
        self._queue.append(frame)
        self._kick()

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then close with `code`. The first close wins."""
        if self._close is None and not self._finished:
            self._close = (code, close_reason(reason))
            self._kick()

    def refuse(self, code: int, reason: str) -> None:
        """Close because of what the client sent: logged, counted, then closed."""
        log.warning("%s: closing with %d: %s", self._label, code, reason)
        self._counters.bad_input_closes += 1
        self.close(code, reason)

    def finish(self) -> None:
        """The peer is gone: stop without sending anything more."""
        self._finished = True
        self._queue.clear()

    def _kick(self) -> None:
        if not self._draining and self._tasks is not None and not self._finished:
            self._draining = True
            self._tasks.create_task(self._drain())

    async def _drain(self) -> None:
        websocket = self._websocket
        try:
            while self._queue and not self._finished:
                await websocket.send_bytes(self._queue.popleft())
            if self._close is not None and not self._finished:
                self._finished = True
                if websocket.application_state == WebSocketState.CONNECTED:
                    await websocket.close(*self._close)
        except (OSError, RuntimeError, WebSocketDisconnect) as exc:
            # The client vanished mid-send; the receive loop sees the disconnect and cleans up.
            log.debug("%s: send failed: %s", self._label, exc)
            self.finish()
        finally:
            self._draining = False
