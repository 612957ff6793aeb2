"""What the PostgreSQL store, its migrations and the link leases share: the translation of
asyncpg's errors into the store's, and the advisory lock namespaces.

Advisory lock keys are (class, key) pairs of int4; the classes spell "SAMM", "SAMC", "SAML"
and "SAMK" so Samen's locks do not collide with other applications sharing the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ..errors import StoreError, StoreUnavailable

__all__ = [
    "COMPACTION_LOCK_CLASS",
    "LEASE_LOCK_CLASS",
    "LOG_ORDER_LOCK_CLASS",
    "MIGRATION_LOCK_CLASS",
    "Connection",
    "driver_errors",
]

MIGRATION_LOCK_CLASS = 0x53414D4D
COMPACTION_LOCK_CLASS = 0x53414D43
LOG_ORDER_LOCK_CLASS = 0x53414D4C  # key 0: one lock for the whole update log
LEASE_LOCK_CLASS = 0x53414D4B  # link leases (server/federation/lease.py)

Connection = asyncpg.Connection | PoolConnectionProxy

# A retry may succeed after any of these: the server is down, restarting, shutting down or
# out of connection slots, or the network between us failed (OSError covers ConnectionError
# and TimeoutError).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    OSError,
)


@contextmanager
def driver_errors(action: str) -> Iterator[None]:
    """Translate asyncpg's errors raised inside the block into `StoreUnavailable` (a retry
    may succeed) or `StoreError`; `action` says what was being done, for the message."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"PostgreSQL unavailable while {action}: {_describe(exc)}") from exc
    except asyncpg.InterfaceError as exc:
        # asyncpg reports a connection it already saw closing as an InterfaceError.
        if "connection is closed" in str(exc) or "connection was closed" in str(exc):
            raise StoreUnavailable(f"PostgreSQL unavailable while {action}: {exc}") from exc
        raise StoreError(f"PostgreSQL client error while {action}: {exc}") from exc
    except (asyncpg.PostgresError, asyncpg.exceptions.InternalClientError) as exc:
        raise StoreError(f"PostgreSQL error while {action}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
