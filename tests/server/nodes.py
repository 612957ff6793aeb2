"""In-process nodes for unit tests of the session seam: a store, a writer, rooms, hooks, a
session registry and the auth ports, wired as `server/app.py` wires them, with no sockets,
no processes and no Node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from protocol.hocuspocus import HocuspocusMessage, decode_frame
from protocol.messages import AwarenessMessage, SyncStep1, SyncStep2, SyncUpdate
from server.auth.ports import AllowAll, Authenticator, Authorizer
from server.backplane.ports import Backplane
from server.compaction import Compactor
from server.control import ControlChannels
from server.hooks import Hooks
from server.metrics import Counters
from server.persistence import UpdateWriter
from server.registry import SessionRegistry
from server.room import Outgoing
from server.rooms import RoomManager
from server.settings import Settings
from server.socket_loop import EndpointServices
from server.store.ports import DocumentStore

__all__ = ["Node", "RecordingChannel", "RecordingOutbox", "running_node"]


@dataclass
class Node:
    store: DocumentStore
    writer: UpdateWriter
    hooks: Hooks
    rooms: RoomManager
    registry: SessionRegistry
    counters: Counters
    services: EndpointServices


@asynccontextmanager
async def running_node(
    store: DocumentStore,
    backplane: Backplane,
    authenticator: Authenticator | None = None,
    authorizer: Authorizer | None = None,
) -> AsyncIterator[Node]:
    """A node on `store` and `backplane` whose background tasks run until the block ends."""
    allow = AllowAll()
    authenticator = authenticator or allow
    authorizer = authorizer or allow
    counters = Counters()
    writer = UpdateWriter(store)
    hooks = Hooks()
    control = ControlChannels()
    rooms = RoomManager(store, writer, Compactor(store, threshold=1000), backplane, counters, hooks=hooks,
                        control=control)  # fmt: skip
    registry = SessionRegistry(authenticator, authorizer, backplane, control)
    services = EndpointServices(Settings(), rooms, authenticator, authorizer, registry, hooks, counters)
    node = Node(store, writer, hooks, rooms, registry, counters, services)
    async with asyncio.TaskGroup() as tasks:
        running = [
            tasks.create_task(writer.run()),
            tasks.create_task(backplane.run()),
            tasks.create_task(rooms.run_repairs()),
            tasks.create_task(hooks.feed.run()),
            tasks.create_task(registry.run()),
        ]
        try:
            yield node
        finally:
            await writer.drain()
            for task in running:
                task.cancel()


@dataclass
class RecordingChannel:
    """A session's channel that records what it would send."""

    label: str = "test"
    sent: list[SyncStep1 | SyncStep2 | AwarenessMessage] = field(default_factory=list)
    delivered: list[Outgoing] = field(default_factory=list)
    acks: list[bool] = field(default_factory=list)
    resyncs: int = 0
    closed: tuple[int, str] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def send(
        self, message: SyncStep1 | SyncStep2 | AwarenessMessage, coalesce_key: str | None = None
    ) -> None:
        self.sent.append(message)
        self.changed.set()

    def deliver(self, message: Outgoing) -> None:
        self.delivered.append(message)
        self.changed.set()

    def acknowledge(self, applied: bool) -> None:
        self.acks.append(applied)
        self.changed.set()

    def resync(self, state_vector: bytes) -> None:
        self.resyncs += 1

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.changed.set()

    def updates_delivered(self) -> list[bytes]:
        return [m.message.update for m in self.delivered if isinstance(m.message, SyncUpdate)]

    async def wait_for(self, condition: object, timeout: float = 5.0) -> None:
        assert callable(condition)
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@dataclass
class RecordingOutbox:
    """A socket's outbound half that records frames (decoded as Hocuspocus frames)."""

    frames: list[bytes] = field(default_factory=list)
    closed: tuple[int, str] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def closing(self) -> bool:
        return self.closed is not None

    def send(self, frame: bytes, coalesce_key: object = None) -> None:
        self.frames.append(frame)
        self.changed.set()

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.changed.set()

    def refuse(self, code: int, reason: str) -> None:
        self.close(code, reason)

    def messages(self, key: str) -> list[HocuspocusMessage]:
        decoded = [decode_frame(frame) for frame in self.frames]
        return [
            f.message for f in decoded if not isinstance(f, type(None)) and getattr(f, "key", None) == key
        ]

    async def wait_for(self, condition: object, timeout: float = 5.0) -> None:
        assert callable(condition)
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()
