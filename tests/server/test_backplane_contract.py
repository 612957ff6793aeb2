"""The backplane port's contract, run against every implementation that connects nodes:
the in-memory hub (one process) and Redis (a private redis-server the test starts)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from protocol.backplane import BackplaneKind, BackplaneMessage
from server.backplane.memory import MemoryHub
from server.backplane.ports import Backplane
from server.backplane.redis import RedisBackplane

from ..redis_server import RedisServer

HEARTBEAT = 0.05


class Inbox:
    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[str, BackplaneMessage]] = asyncio.Queue()
        self.reconnects = 0

    def on_message(self, name: str, message: BackplaneMessage) -> None:
        self.messages.put_nowait((name, message))

    def on_reconnect(self) -> None:
        self.reconnects += 1

    async def next(self, kind: BackplaneKind | None = None) -> tuple[str, BackplaneMessage]:
        async with asyncio.timeout(10):
            while True:
                name, message = await self.messages.get()
                if kind is None or message.kind == kind:
                    return name, message


@pytest.fixture(params=["memory", "redis"])
async def nodes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[list[tuple[Backplane, Inbox]]]:
    async with AsyncExitStack() as stack:
        backplanes: list[Backplane]
        if request.param == "memory":
            hub = MemoryHub()
            backplanes = [hub.backplane(n, heartbeat_interval=HEARTBEAT) for n in ("a", "b", "c")]
        else:
            redis = await stack.enter_async_context(RedisServer(tmp_path / "redis"))
            backplanes = [
                RedisBackplane(redis.url, "contract:", n, heartbeat_interval=HEARTBEAT)
                for n in ("a", "b", "c")
            ]
        inboxes = [Inbox() for _ in backplanes]
        for backplane, inbox in zip(backplanes, inboxes, strict=True):
            backplane.set_handlers(inbox.on_message, inbox.on_reconnect)
            stack.push_async_callback(backplane.close)
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        running = [tasks.create_task(b.run()) for b in backplanes]
        async with asyncio.timeout(10):
            # The port announces no "connected" event (nodes never wait for it): poll the flag.
            while not all(b.connected for b in backplanes):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        yield list(zip(backplanes, inboxes, strict=True))
        for task in running:
            task.cancel()


async def test_a_message_reaches_the_other_subscribers_in_order_never_the_sender(
    nodes: list[tuple[Backplane, Inbox]],
) -> None:
    (a, a_inbox), (b, b_inbox), (c, c_inbox) = nodes
    await b.subscribe("doc")
    await a.subscribe("doc")
    seqs = [a.publish("doc", BackplaneKind.UPDATE, bytes([i])) for i in range(20)]
    assert seqs == list(range(seqs[0], seqs[0] + 20))
    for i in range(20):
        name, message = await b_inbox.next(BackplaneKind.UPDATE)
        assert (name, message.origin, message.seq, message.payload) == ("doc", "a", seqs[i], bytes([i]))
    # The sender hears nothing of its own, and c (not subscribed) nothing at all: a marker
    # published by b after a's messages reaches a, and nothing came before it.
    await a.subscribe("marker")
    await c.subscribe("marker")
    b.publish("marker", BackplaneKind.UPDATE, b"m")
    assert (await a_inbox.next())[0] == "marker"
    assert (await c_inbox.next())[0] == "marker"


async def test_a_message_published_right_after_subscribe_returns_is_received(
    nodes: list[tuple[Backplane, Inbox]],
) -> None:
    """The join order (subscribe, then load, then catch up) relies on it."""
    (a, _), (b, b_inbox), _ = nodes
    for i in range(5):
        await b.subscribe(f"doc-{i}")
        a.publish(f"doc-{i}", BackplaneKind.UPDATE, b"x")
        name, _ = await b_inbox.next(BackplaneKind.UPDATE)
        assert name == f"doc-{i}"


async def test_heartbeats_carry_what_is_durable(nodes: list[tuple[Backplane, Inbox]]) -> None:
    (a, _), (b, b_inbox), _ = nodes
    await a.subscribe("doc")
    await b.subscribe("doc")
    seq = a.publish("doc", BackplaneKind.UPDATE, b"u")
    _, update = await b_inbox.next(BackplaneKind.UPDATE)
    assert update.durable_through < seq
    a.mark_durable("doc", seq)
    while True:
        _, heartbeat = await b_inbox.next(BackplaneKind.HEARTBEAT)
        if heartbeat.durable_through == seq:
            break
    assert heartbeat.seq == seq  # repeats the last seq, so a lost final message shows as a gap


async def test_sync_replies_name_their_target(nodes: list[tuple[Backplane, Inbox]]) -> None:
    (a, _), (b, b_inbox), _ = nodes
    await b.subscribe("\0control")
    a.publish("\0control", BackplaneKind.SYNC_REPLY, b"\x00\x00", target="b")
    name, message = await b_inbox.next(BackplaneKind.SYNC_REPLY)
    assert (name, message.target, message.payload) == ("\0control", "b", b"\x00\x00")
