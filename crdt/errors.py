"""The root exception of the crdt package; pycrdt's errors are translated into these."""

from __future__ import annotations

__all__ = ["CrdtError", "InvalidStateVector", "InvalidUpdate"]


class CrdtError(Exception):
    """Base of everything the document model raises. `reason` is safe to show a peer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidUpdate(CrdtError):
    """An update that does not decode as a Yjs v1 update; the document is unchanged."""


class InvalidStateVector(CrdtError):
    """A state vector that does not decode."""
