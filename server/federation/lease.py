"""Link leases: exactly one node of a site holds the link to a given peer.

With PostgreSQL the lease is a session-level advisory lock held on a connection of its own:
when the holding node dies, its connection closes and PostgreSQL releases the lock at once,
so a node waiting in `acquire` takes over. With the embedded store there is one node, and
an in-process lock is enough.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import asyncpg

from ..errors import StoreError
from ..store.pgdriver import LEASE_LOCK_CLASS, driver_errors

__all__ = ["Lease", "LeaseManager", "LocalLeases", "PostgresLeases"]

log = logging.getLogger(__name__)

_KEEPALIVE_SECONDS = 2.0
_LOCK = "SELECT pg_advisory_lock($1, hashtext($2))"
_TRY_LOCK = "SELECT pg_try_advisory_lock($1, hashtext($2))"


class Lease(Protocol):
    peer: str

    @property
    def lost(self) -> asyncio.Event:
        """Set when the lease can no longer be trusted (the holding connection failed)."""
        ...

    async def watch(self) -> None:
        """Runs while the lease is held; returns when it is lost."""
        ...

    async def release(self) -> None: ...


class LeaseManager(Protocol):
    async def acquire(self, peer: str) -> Lease:
        """Wait until this node holds the lease for `peer`."""
        ...

    async def try_acquire(self, peer: str) -> Lease | None:
        """The lease for `peer` if nobody holds it, else None."""
        ...


class _LocalLease:
    def __init__(self, peer: str, lock: asyncio.Lock) -> None:
        self.peer = peer
        self._lock = lock
        self._lost = asyncio.Event()

    @property
    def lost(self) -> asyncio.Event:
        return self._lost

    async def watch(self) -> None:
        await self._lost.wait()

    async def release(self) -> None:
        if not self._lost.is_set():
            self._lost.set()
            self._lock.release()


class LocalLeases:
    """Leases within one process (the single-node, embedded-store case)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, peer: str) -> Lease:
        lock = self._locks.setdefault(peer, asyncio.Lock())
        await lock.acquire()
        return _LocalLease(peer, lock)

    async def try_acquire(self, peer: str) -> Lease | None:
        lock = self._locks.setdefault(peer, asyncio.Lock())
        if lock.locked():
            return None
        await lock.acquire()  # free, so this does not wait
        return _LocalLease(peer, lock)


class _PostgresLease:
    def __init__(self, peer: str, conn: asyncpg.Connection) -> None:
        self.peer = peer
        self._conn = conn
        self._lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: self._lost.set())

    @property
    def lost(self) -> asyncio.Event:
        return self._lost

    async def watch(self) -> None:
        # A dead TCP connection is only noticed when used: ask the server every few seconds.
        while not self._lost.is_set():
            try:
                async with asyncio.timeout(_KEEPALIVE_SECONDS):
                    with driver_errors(f"keeping the lease of the link to {self.peer}"):
                        await self._conn.fetchval("SELECT 1")
            except (StoreError, TimeoutError) as exc:
                log.warning("lease of the link to %s lost: %s", self.peer, exc or "timeout")
                self._lost.set()
                break
            try:
                async with asyncio.timeout(_KEEPALIVE_SECONDS):
                    await self._lost.wait()
            except TimeoutError:
                pass

    async def release(self) -> None:
        self._lost.set()
        try:
            with driver_errors(f"releasing the lease of the link to {self.peer}"):
                await self._conn.close(timeout=2)  # closing the session releases its advisory locks
        except (StoreError, TimeoutError):
            self._conn.terminate()


class PostgresLeases:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    async def _connect(self, peer: str) -> asyncpg.Connection:
        with driver_errors(f"connecting for the lease of the link to {peer}"):
            conn: asyncpg.Connection = await asyncpg.connect(self._dsn, timeout=10)
        return conn

    async def acquire(self, peer: str) -> Lease:
        conn = await self._connect(peer)
        try:
            with driver_errors(f"taking the lease of the link to {peer}"):
                await conn.execute(_LOCK, LEASE_LOCK_CLASS, f"link:{peer}")
        except BaseException:
            conn.terminate()  # cancelled while waiting, or failed: the lock goes with the session
            raise
        return _PostgresLease(peer, conn)

    async def try_acquire(self, peer: str) -> Lease | None:
        conn = await self._connect(peer)
        try:
            with driver_errors(f"trying the lease of the link to {peer}"):
                held = await conn.fetchval(_TRY_LOCK, LEASE_LOCK_CLASS, f"link:{peer}")
                if not held:
                    await conn.close()
                    return None
        except BaseException:
            conn.terminate()
            raise
        return _PostgresLease(peer, conn)
