"""The outbound half of a client socket: a queue bounded in bytes and the one task that writes it.

Rooms hand frames to `send` without waiting. What a connection holds (its queue and the frame
being written) is counted in bytes, each frame with a fixed overhead, against a budget
(SAMEN_SEND_BUDGET). A client that would go over it is closed with 1013 instead of being
allowed to stall its room or pin memory: it cannot read as fast as its room writes.

One frame larger than the whole budget may be held besides (the first sync of a document
bigger than the budget must still get through), so a connection never holds more than its
budget plus its largest frame. Below the queue, asyncio's flow control keeps the socket's
own buffer to about one frame: `send_bytes` waits while the transport is paused.

`send(frame, coalesce_key=k)` replaces a queued frame with the same key that is not being
written yet, instead of queueing another: a client asking for the same thing again (say a
SyncStep2 for a big document) gets the newer answer once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Hashable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .close_codes import CloseCode, close_reason
from .metrics import Counters

__all__ = ["FRAME_OVERHEAD", "SendAccounting", "SocketSender"]

log = logging.getLogger(__name__)

# What a queued frame costs besides its bytes: the bytes object's header (33), its slot
# object and deque cell. Without it, a budget of small frames would cost several times itself.
FRAME_OVERHEAD = 96


class SendAccounting:
    """What the client connections of a node hold for sending, for `/metrics` and the tests:
    the server's own accounting, not the process RSS."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held_bytes = 0  # every connection, now (a frame shared by many counts for each)
        self.peak_bytes = 0  # the most one connection held at once, since the start
        self.senders: set[SocketSender] = set()  # the live connections

    def largest(self) -> int:
        """The most one connection holds now (read at scrape time, not kept up to date)."""
        return max((sender.held for sender in self.senders), default=0)

    def metric_families(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "samen_send_queued_bytes",
            "Bytes waiting to be sent to clients (every connection's frames in full, shared or not)",
            value=self.held_bytes,
        )
        yield GaugeMetricFamily(
            "samen_send_queue_max_bytes",
            "Bytes waiting for the one client that has the most",
            value=self.largest(),
        )
        yield GaugeMetricFamily(
            "samen_send_queue_peak_bytes",
            "The most bytes one client had waiting at any moment since the start",
            value=self.peak_bytes,
        )
        yield GaugeMetricFamily("samen_send_budget_bytes", "SAMEN_SEND_BUDGET", value=self.budget)


class _Slot:
    """A queued frame that needs more than its bytes: a coalesce key, or the oversized mark.
    Plain frames are queued as they are (no object per frame on the hot path)."""

    __slots__ = ("cost", "frame", "key", "oversized")

    def __init__(self, frame: bytes, cost: int, key: Hashable | None, oversized: bool) -> None:
        self.frame = frame
        self.cost = cost
        self.key = key
        self.oversized = oversized


class SocketSender:
    """Frames queue here; a drain task owned by the connection's task group writes them.

    The drain task exists only while there is something to write: an idle connection (most
    of them, most of the time) holds no task at all, which keeps it small.
    """

    def __init__(
        self, websocket: WebSocket, accounting: SendAccounting, label: str, counters: Counters
    ) -> None:
        self._websocket = websocket
        self._accounting = accounting
        self._budget = accounting.budget
        self._counters = counters
        self._label = label
        self._queue: deque[bytes | _Slot] = deque()
        self._keyed: dict[Hashable, _Slot] = {}  # queued frames with a coalesce key
        self._held = 0  # cost of the queue and of the frame being written
        self._oversized = 0  # cost of the one held frame larger than the budget, if any
        self._close: tuple[int, str] | None = None
        self._finished = False
        self._tasks: asyncio.TaskGroup | None = None
        self._draining = False

    @property
    def closing(self) -> bool:
        return self._close is not None or self._finished

    @property
    def held(self) -> int:
        """Bytes (with the per-frame overhead) this connection holds for sending."""
        return self._held

    def bind(self, tasks: asyncio.TaskGroup) -> None:
        """Start writing, in tasks of `tasks` (the connection's group, which waits for them)."""
        self._tasks = tasks
        if not self._finished:
            self._accounting.senders.add(self)  # until it finishes: see `largest`
        self._kick()

    def pending(self, coalesce_key: Hashable) -> bool:
        """Whether a frame sent with `coalesce_key` is still queued (not being written yet)."""
        return coalesce_key in self._keyed

    def send(self, frame: bytes, coalesce_key: Hashable | None = None) -> None:
        """Queue `frame`; with `coalesce_key`, replace the queued frame of that key if any."""
        if self._close is not None or self._finished:
            return
        cost = len(frame) + FRAME_OVERHEAD
        held = self._held + cost
        if coalesce_key is None and held - self._oversized <= self._budget:  # the hot path
            self._queue.append(frame)
            self._held = held
            accounting = self._accounting
            accounting.held_bytes += cost
            if held > accounting.peak_bytes:
                accounting.peak_bytes = held
            if not self._draining:
                self._kick()
            return
        self._send_slot(frame, cost, coalesce_key)

    def _send_slot(self, frame: bytes, cost: int, coalesce_key: Hashable | None) -> None:
        replacing = self._keyed.get(coalesce_key) if coalesce_key is not None else None
        oversized = self._admit(cost, replacing)
        if oversized is None:
            self._over_budget(cost)
            return
        if replacing is not None:
            if replacing.oversized:
                self._oversized = 0
            self._account(cost - replacing.cost)
            replacing.frame, replacing.cost, replacing.oversized = frame, cost, oversized
        else:
            replacing = _Slot(frame, cost, coalesce_key, oversized)
            self._queue.append(replacing)
            if coalesce_key is not None:
                self._keyed[coalesce_key] = replacing
            self._account(cost)
            self._kick()
        if oversized:
            self._oversized = cost

    def _admit(self, cost: int, replacing: _Slot | None) -> bool | None:
        """None if `cost` does not fit; otherwise whether it is the one oversized frame."""
        held, oversized = self._held, self._oversized
        if replacing is not None:
            held -= replacing.cost
            if replacing.oversized:
                oversized = 0
        if cost > self._budget:
            return None if oversized else True
        return False if held - oversized + cost <= self._budget else None

    def _account(self, delta: int) -> None:
        self._held += delta
        accounting = self._accounting
        accounting.held_bytes += delta
        if self._held > accounting.peak_bytes:
            accounting.peak_bytes = self._held

    def _release(self, cost: int, oversized: bool) -> None:
        if oversized:
            self._oversized = 0
        self._held -= cost
        self._accounting.held_bytes -= cost

    def _over_budget(self, cost: int) -> None:
        log.warning(
            "%s: %d bytes waiting and %d more to send, over the budget of %d; client too slow, closing",
            self._label,
            self._held,
            cost,
            self._budget,
        )
        self._drop_queue()
        self._counters.slow_clients_closed += 1
        self.close(CloseCode.TRY_AGAIN_LATER, "client too slow")

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
        self._drop_queue()
        if not self._draining:
            self._accounting.senders.discard(self)

    def _drop_queue(self) -> None:
        while self._queue:
            item = self._queue.popleft()
            if type(item) is bytes:
                self._release(len(item) + FRAME_OVERHEAD, False)
            else:
                assert isinstance(item, _Slot)
                self._release(item.cost, item.oversized)
        self._keyed.clear()

    def _kick(self) -> None:
        if not self._draining and self._tasks is not None and not self._finished:
            self._draining = True
            self._tasks.create_task(self._drain())

    async def _drain(self) -> None:
        websocket, queue = self._websocket, self._queue
        try:
            while queue and not self._finished:
                item = queue.popleft()
                if type(item) is bytes:
                    frame, cost, oversized = item, len(item) + FRAME_OVERHEAD, False
                else:
                    assert isinstance(item, _Slot)
                    frame, cost, oversized = item.frame, item.cost, item.oversized
                    if item.key is not None and self._keyed.get(item.key) is item:
                        del self._keyed[item.key]
                try:
                    await websocket.send_bytes(frame)
                finally:
                    self._release(cost, oversized)  # handed to the transport (or lost with the socket)
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
            if self._finished:
                self._accounting.senders.discard(self)
