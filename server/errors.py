"""The root exception of the server package and the errors callers react to differently."""

from __future__ import annotations

__all__ = ["ClientError", "ConfigError", "RoomLoadError", "SamenError", "StoreError", "StoreUnavailable"]


class SamenError(Exception):
    """Base of everything `server/` raises on purpose."""


class ConfigError(SamenError):
    """A setting has a value the server cannot use; the message names the setting."""


class StoreError(SamenError):
    """The document store failed; driver errors are translated into this at the boundary."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now; the operation may succeed if retried."""


class RoomLoadError(SamenError):
    """A document could not be loaded. The room is not opened: serving an empty document
    here could later overwrite the real one."""


class ClientError(SamenError):
    """A client did something this server refuses; its socket is closed with `code` and
    `reason` (short, safe to show it)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
