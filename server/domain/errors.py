"""What domain services refuse, with a stable code the REST API and the CLI show as is."""

from __future__ import annotations

from ..errors import SamenError

__all__ = ["Conflict", "DomainError", "Invalid", "NotFound", "Refused"]


class DomainError(SamenError):
    """`code` is short and stable (e.g. "name_taken"); `message` is safe to show."""

    status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Invalid(DomainError):
    status = 422


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class Refused(DomainError):
    """Not allowed for this caller (or this account's state)."""

    status = 403
