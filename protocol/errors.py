"""The one exception type of the protocol package.

Every decoder in `protocol/` turns bad bytes into `ProtocolError` (never an IndexError,
a UnicodeDecodeError or a hang), so the server can map it to a close code in one place.
"""

from __future__ import annotations

__all__ = ["ProtocolError", "UnknownMessageType"]


class ProtocolError(ValueError):
    """Bytes that do not form a valid message. `reason` is short and safe to send to a peer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownMessageType(ProtocolError):
    """A well-formed frame whose message type this side does not speak."""
