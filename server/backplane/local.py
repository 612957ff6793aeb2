"""The in-process backplane of a single node: nothing to fan out to, nothing to lose."""

from __future__ import annotations

import asyncio

from protocol.backplane import BackplaneKind

from .ports import BackplaneStats, MessageHandler, ReconnectHandler

__all__ = ["LocalBackplane"]


class LocalBackplane:
    """Rooms of one process already share their documents, so publishing is a no-op."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.stats = BackplaneStats()

    @property
    def connected(self) -> bool:
        return True

    def set_handlers(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        pass

    async def run(self) -> None:
        await asyncio.Event().wait()  # nothing to do until cancelled

    async def subscribe(self, name: str) -> None:
        pass

    def unsubscribe(self, name: str) -> None:
        pass

    def publish(self, name: str, kind: BackplaneKind, payload: bytes = b"", target: str = "") -> int:
        return 0

    def mark_durable(self, name: str, seq: int) -> None:
        pass

    async def close(self) -> None:
        pass
