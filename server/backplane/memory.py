"""An in-memory backplane: several nodes in one process, connected by a hub.

For tests (and tools) that run a multi-node site without Redis: it keeps the Redis
backplane's contract — per-origin sequence numbers, heartbeats that carry what is durable,
delivery in publish order on a later event-loop turn, never to the sender itself — but
loses nothing.
"""

from __future__ import annotations

import asyncio

from protocol.backplane import BackplaneKind, BackplaneMessage

from .ports import BackplaneStats, MessageHandler, ReconnectHandler
from .sequencing import OutboundSequences

__all__ = ["MemoryBackplane", "MemoryHub"]


class MemoryHub:
    def __init__(self) -> None:
        self._nodes: list[MemoryBackplane] = []

    def backplane(self, node: str, *, heartbeat_interval: float = 0.5) -> MemoryBackplane:
        backplane = MemoryBackplane(self, node, heartbeat_interval)
        self._nodes.append(backplane)
        return backplane

    def _deliver(self, sender: MemoryBackplane, name: str, message: BackplaneMessage) -> None:
        loop = asyncio.get_running_loop()
        for node in self._nodes:
            if node is not sender and name in node.subscribed:
                loop.call_soon(node.receive, name, message)

    def _leave(self, node: MemoryBackplane) -> None:
        if node in self._nodes:
            self._nodes.remove(node)


class MemoryBackplane:
    def __init__(self, hub: MemoryHub, node: str, heartbeat_interval: float) -> None:
        self.node = node
        self.stats = BackplaneStats()
        self.subscribed: set[str] = set()
        self._hub = hub
        self._sequences = OutboundSequences(node)
        self._heartbeat_interval = heartbeat_interval
        self._on_message: MessageHandler = lambda _name, _message: None
        self._on_reconnect: ReconnectHandler = lambda: None

    @property
    def connected(self) -> bool:
        return True

    def set_handlers(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        self._on_message = on_message
        self._on_reconnect = on_reconnect

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            for name, message in self._sequences.heartbeats(self.subscribed):
                self._hub._deliver(self, name, message)

    async def subscribe(self, name: str) -> None:
        self.subscribed.add(name)

    def unsubscribe(self, name: str) -> None:
        self.subscribed.discard(name)

    def publish(self, name: str, kind: BackplaneKind, payload: bytes = b"", target: str = "") -> int:
        message = self._sequences.next(name, kind, payload, target)
        self.stats.published += 1
        self._hub._deliver(self, name, message)
        return message.seq

    def mark_durable(self, name: str, seq: int) -> None:
        self._sequences.mark_durable(name, seq)

    def receive(self, name: str, message: BackplaneMessage) -> None:
        if name in self.subscribed:  # it may have unsubscribed since the message was sent
            self.stats.received += 1
            self._on_message(name, message)

    async def close(self) -> None:
        self._hub._leave(self)
