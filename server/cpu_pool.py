"""CPU-heavy document work (compaction, merging long logs) in a separate process.

pycrdt holds the GIL while it applies updates, so a compaction in a thread stalls the event
loop of every connection on the node. A worker process has its own GIL. The pool is owned
by the app lifespan: started with the node, shut down after the last write.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from crdt.compaction import compact

__all__ = ["CpuPool"]


class CpuPool:
    def __init__(self, workers: int = 1) -> None:
        self._workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def start(self) -> None:
        # spawn, not fork: the node has threads (SQLite, asyncpg) that a fork would copy mid-flight.
        self._executor = ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"))

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def compact_blocking(self, updates: Sequence[bytes]) -> bytes:
        """`crdt.compaction.compact` in the worker process; for code already on a thread
        (the stores call their merge function from a worker thread)."""
        if self._executor is None:
            return compact(updates)  # not started (tests, tools): same result, in-process
        return self._executor.submit(compact, list(updates)).result()

    async def compact(self, updates: Sequence[bytes]) -> bytes:
        if self._executor is None:
            return await asyncio.to_thread(compact, updates)
        return await asyncio.wrap_future(self._executor.submit(compact, list(updates)))
