"""Backplane channels that are not documents: one registry, any number of handlers.

Federation listens on "log advanced" and site presence, the session registry on
revocations; each registers its channel here instead of taking over a single slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from protocol.backplane import BackplaneMessage

__all__ = ["CONTROL_PREFIX", "ControlChannels", "ControlHandler", "control_channel"]

log = logging.getLogger(__name__)

# Channels that are not documents start with NUL, which no client can put in a document
# name (names with control characters are refused).
CONTROL_PREFIX = "\0"

ControlHandler = Callable[[BackplaneMessage], None]


def control_channel(name: str) -> str:
    return CONTROL_PREFIX + name


class ControlChannels:
    def __init__(self) -> None:
        self._handlers: dict[str, list[ControlHandler]] = {}

    def register(self, channel: str, handler: ControlHandler) -> None:
        """`handler(message)` runs for every message another node sends on `channel`
        (which the registering service subscribes to on the backplane)."""
        if not channel.startswith(CONTROL_PREFIX):
            raise ValueError(f"control channel names start with NUL: {channel!r}")
        self._handlers.setdefault(channel, []).append(handler)

    @property
    def channels(self) -> list[str]:
        return list(self._handlers)

    def dispatch(self, channel: str, message: BackplaneMessage) -> None:
        for handler in self._handlers.get(channel, ()):
            try:
                handler(message)
            except Exception:
                # One failing service must not stop the others hearing the backplane.
                log.exception("control handler %r failed on %r", handler, channel[1:])
