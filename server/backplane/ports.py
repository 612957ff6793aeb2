"""The backplane port: per-document pub/sub between the nodes of a site.

A node subscribes to a document's channel before it loads the document, publishes what its
own clients change, and hands every message from another node to the handler. Publishing
never waits: messages are queued and sent in order by the backplane's own task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from protocol.backplane import BackplaneKind, BackplaneMessage

__all__ = ["Backplane", "BackplaneStats", "MessageHandler", "ReconnectHandler"]

MessageHandler = Callable[[str, BackplaneMessage], None]
ReconnectHandler = Callable[[], None]


@dataclass(slots=True)
class BackplaneStats:
    published: int = 0
    received: int = 0
    publish_failures: int = 0
    reconnects: int = 0


class Backplane(Protocol):
    node: str
    stats: BackplaneStats

    @property
    def connected(self) -> bool: ...

    def set_handlers(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None: ...

    async def run(self) -> None:
        """The backplane's tasks; runs until cancelled."""
        ...

    async def subscribe(self, name: str) -> None:
        """Subscribe to `name`; returns once subscribed, or at once while disconnected (the
        subscription is then made on reconnect, followed by a reconnect callback)."""
        ...

    def unsubscribe(self, name: str) -> None: ...

    def publish(self, name: str, kind: BackplaneKind, payload: bytes = b"", target: str = "") -> int:
        """Queue a message; returns its sequence number on `name`'s channel."""
        ...

    def mark_durable(self, name: str, seq: int) -> None:
        """The update published as `seq` on `name` is in the store."""
        ...

    async def close(self) -> None: ...
