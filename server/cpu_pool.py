"""CPU-heavy document work (compaction, merging long logs) in a separate process.

pycrdt holds the GIL while it applies updates, so a compaction in a thread stalls the event
loop of every connection on the node. A worker process has its own GIL. The pool is owned
by the app lifespan: started with the node, shut down after the last write.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from crdt.compaction import compact

__all__ = ["CpuPool"]

T = TypeVar("T")


class CpuPool:
    def __init__(self, workers: int = 1) -> None:
        self._workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def start(self) -> None:
        # spawn, not fork: the node has threads (SQLite, asyncpg) that a fork would copy mid-flight.
        self._executor = ProcessPoolExecutor(
            self._workers, mp_context=multiprocessing.get_context("spawn"), initializer=watch_parent
        )

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

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the worker process (a module-level function of picklable
        arguments and result), or in a thread when the pool is not started."""
        if self._executor is None:
            return await asyncio.to_thread(fn, *args)
        return await asyncio.wrap_future(self._executor.submit(fn, *args))

    async def compact(self, updates: Sequence[bytes]) -> bytes:
        if self._executor is None:
            return await asyncio.to_thread(compact, updates)
        return await asyncio.wrap_future(self._executor.submit(compact, list(updates)))


def watch_parent() -> None:
    """In a worker: exit as soon as the node that started it is gone. After a `kill -9` of
    the node nothing else would tell it: the workers share the task queue's pipe, so it
    never reaches end-of-file, and they would wait on it for ever."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return
    sentinel = parent.sentinel

    def wait_for_parent() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(1)  # no clean-up to do: the node's work died with it

    threading.Thread(target=wait_for_parent, name="watch-parent", daemon=True).start()
