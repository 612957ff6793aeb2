"""SocketSender: a budget in bytes, the 1013 close, coalescing, and the accounting /metrics shows.

The sender writes to a real Starlette WebSocket; its ASGI peer below stands for a client that
reads only when the test lets it (a socket that stops reading makes uvicorn's `send` wait).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.websockets import WebSocket

from server.close_codes import CloseCode
from server.metrics import Counters
from server.sender import FRAME_OVERHEAD, SendAccounting, SocketSender

BUDGET = 64 * 1024


class Peer:
    """The client end of one ASGI WebSocket."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.received: list[bytes] = []
        self.attempts = 0  # sends the server began, read or not
        self.close: tuple[int, str] | None = None
        self.changed = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.accept":
            return
        self.attempts += 1
        self.changed.set()
        await self.reading.wait()
        if message["type"] == "websocket.send":
            self.received.append(message["bytes"])
        elif message["type"] == "websocket.close":
            self.close = (message["code"], message.get("reason", ""))
        self.changed.set()

    async def wait_for(self, check: Any) -> None:
        async with asyncio.timeout(5):
            while not check():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def setup() -> AsyncIterator[tuple[SocketSender, Peer, SendAccounting, Counters]]:
    peer = Peer()
    websocket = WebSocket({"type": "websocket", "path": "/ws/x", "headers": []}, peer.receive, peer.send)
    await websocket.accept()
    accounting, counters = SendAccounting(BUDGET), Counters()
    sender = SocketSender(websocket, accounting, "test", counters)
    async with asyncio.TaskGroup() as tasks:
        sender.bind(tasks)
        yield sender, peer, accounting, counters
        peer.reading.set()
        sender.finish()


async def test_frames_flow_and_the_accounting_returns_to_zero(setup: Any) -> None:
    sender, peer, accounting, _ = setup
    sender.send(b"a" * 100)
    sender.send(b"b" * 200)
    assert sender.held == 300 + 2 * FRAME_OVERHEAD == accounting.held_bytes == accounting.largest()
    peer.reading.set()
    await peer.wait_for(lambda: len(peer.received) == 2)
    assert peer.received == [b"a" * 100, b"b" * 200]
    await peer.wait_for(lambda: accounting.held_bytes == 0)
    assert sender.held == 0 and accounting.largest() == 0
    assert accounting.peak_bytes == 300 + 2 * FRAME_OVERHEAD


async def test_a_client_that_does_not_read_is_closed_before_it_costs_more_than_its_budget(setup: Any) -> None:
    sender, peer, accounting, counters = setup
    frame = b"x" * 1000
    sent = 0
    while not sender.closing:
        sender.send(frame)
        sent += 1
        assert sender.held <= BUDGET and accounting.peak_bytes <= BUDGET
    assert sent == BUDGET // (len(frame) + FRAME_OVERHEAD) + 1
    assert counters.slow_clients_closed == 1
    # The queue is dropped at once; what is left is the frame the socket is writing.
    assert sender.held <= len(frame) + FRAME_OVERHEAD
    sender.send(frame)  # ignored from now on
    peer.reading.set()
    await peer.wait_for(lambda: peer.close is not None)
    assert peer.close == (CloseCode.TRY_AGAIN_LATER, "client too slow")
    assert len(peer.received) <= 1
    await peer.wait_for(lambda: accounting.held_bytes == 0)


async def test_one_frame_larger_than_the_budget_may_wait(setup: Any) -> None:
    # The first sync of a document bigger than the budget must get through.
    sender, peer, accounting, _ = setup
    big = b"d" * (3 * BUDGET)
    sender.send(b"hello")
    sender.send(big)
    sender.send(b"update" * 100)  # small frames behind it still fit
    assert not sender.closing
    assert accounting.peak_bytes <= BUDGET + len(big) + FRAME_OVERHEAD
    sender.send(big)  # but not a second one
    assert sender.closing
    peer.reading.set()
    await peer.wait_for(lambda: peer.close is not None)


async def test_an_oversized_frame_is_released_once_written(setup: Any) -> None:
    sender, peer, _, _ = setup
    big = b"d" * (2 * BUDGET)
    sender.send(big)
    peer.reading.set()
    await peer.wait_for(lambda: len(peer.received) == 1)
    await peer.wait_for(lambda: sender.held == 0)
    sender.send(big)  # the budget is free again
    await peer.wait_for(lambda: len(peer.received) == 2)
    assert not sender.closing


async def test_coalescing_replaces_the_queued_frame_of_the_same_key(setup: Any) -> None:
    sender, peer, _, _ = setup
    sender.send(b"first")
    await peer.wait_for(lambda: peer.attempts == 1)  # being written; the peer does not read yet
    for version in range(60):
        sender.send(b"sync step 2, version %d" % version, coalesce_key="ss2")
        assert sender.pending("ss2")
    sender.send(b"update")
    assert sender.held == sum(
        len(f) + FRAME_OVERHEAD for f in (b"first", b"sync step 2, version 59", b"update")
    )
    peer.reading.set()
    await peer.wait_for(lambda: len(peer.received) == 3)
    assert peer.received == [b"first", b"sync step 2, version 59", b"update"]
    assert not sender.pending("ss2")
    # Once written, the key starts afresh.
    sender.send(b"again", coalesce_key="ss2")
    await peer.wait_for(lambda: len(peer.received) == 4)


async def test_coalescing_keeps_the_budget(setup: Any) -> None:
    sender, peer, _, counters = setup
    sender.send(b"first")
    await peer.wait_for(lambda: peer.attempts == 1)
    sender.send(b"s" * 100, coalesce_key="k")
    sender.send(b"s" * (BUDGET - 1000), coalesce_key="k")  # a bigger replacement that fits
    assert not sender.closing
    sender.send(b"s" * (BUDGET + 1), coalesce_key="k")  # the one oversized frame: allowed too
    assert not sender.closing
    sender.send(b"u" * (BUDGET - 100))  # but nothing big besides
    assert sender.closing and counters.slow_clients_closed == 1


async def test_finish_drops_everything(setup: Any) -> None:
    sender, _, accounting, _ = setup
    for _ in range(10):
        sender.send(b"x" * 100, coalesce_key=None)
    sender.send(b"y", coalesce_key="k")
    sender.finish()
    assert not sender.pending("k")
    # Only the frame the drain task had already taken is still held, until its send returns.
    assert accounting.held_bytes <= 100 + FRAME_OVERHEAD
