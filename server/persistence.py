"""Group commit: updates queue here and one task writes them, many per transaction.

Nothing is acknowledged before it is durable: `submit` takes an `on_durable` callback that
runs only after the transaction holding the update has committed. A failing store is
retried with backoff, forever; the queued updates stay in memory (and their rooms stay
loaded) until they are written.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import StoreError
from .loops import Backoff, wait_for_work
from .store.ports import LOCAL_ORIGIN, SERVER_AUTHOR, AppendRow, DocumentStore

__all__ = ["UpdateWriter"]

log = logging.getLogger(__name__)

Callback = Callable[[], None]


@dataclass(slots=True)
class _Pending:
    name: str
    update: bytes
    origin: str
    author: str
    callbacks: list[Callback] = field(default_factory=list)


class UpdateWriter:
    def __init__(
        self,
        store: DocumentStore,
        *,
        max_batch: int = 1000,
        max_backoff: float = 5.0,
        on_batch: Callable[[float], None] | None = None,
    ) -> None:
        self._store = store
        self._on_batch = on_batch
        self._max_batch = max_batch
        self._backoff = Backoff(0.05, max_backoff)
        self._queue: deque[_Pending] = deque()
        self._in_flight: list[_Pending] = []
        self._per_doc: Counter[str] = Counter()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._listeners: list[Callable[[Counter[str]], None]] = []
        self._captures: dict[str, list[bytes]] = {}
        self.failures = 0
        self.failures_in_a_row = 0
        self.batches = 0
        self.rows_written = 0
        self.last_batch_seconds = 0.0

    def add_flush_listener(self, listener: Callable[[Counter[str]], None]) -> None:
        """`listener(rows per document)` runs after each committed batch."""
        self._listeners.append(listener)

    def submit(
        self,
        name: str,
        update: bytes,
        on_durable: Callback | None = None,
        *,
        origin: str = LOCAL_ORIGIN,
        author: str = SERVER_AUTHOR,
    ) -> None:
        """Queue `update` of document `name` for the next batch. `origin`: LOCAL_ORIGIN for
        updates of this site's clients, else the id of the peer site it was replicated from
        (federation sends peers only local rows, so a wrong origin echoes or drops updates).
        `author`: the principal id of whoever made it ("name@site"), "" for the server."""
        item = _Pending(name, update, origin, author)
        capture = self._captures.get(name)
        if capture is not None:
            capture.append(update)
        if on_durable is not None:
            item.callbacks.append(on_durable)
        self._queue.append(item)
        self._per_doc[name] += 1
        self._idle.clear()
        self._wakeup.set()

    def when_durable(self, callback: Callback) -> None:
        """Run `callback` once everything submitted so far is durable."""
        if self._queue:
            self._queue[-1].callbacks.append(callback)
        elif self._in_flight:
            self._in_flight[-1].callbacks.append(callback)
        else:
            asyncio.get_running_loop().call_soon(callback)

    def capture(self, name: str) -> list[bytes]:
        """Start collecting the updates of `name` that may be missing from a store read
        that starts now: those not yet durable, and every one submitted until `release`.
        (A document being loaded must not miss an update committed during its read.)"""
        captured = [p.update for p in (*self._in_flight, *self._queue) if p.name == name]
        self._captures[name] = captured
        return captured

    def release(self, name: str) -> None:
        self._captures.pop(name, None)

    def pending(self, name: str) -> int:
        """Updates of `name` not yet durable (queued or in the transaction being written)."""
        return self._per_doc.get(name, 0)

    @property
    def queue_depth(self) -> int:
        return len(self._queue) + len(self._in_flight)

    async def drain(self) -> None:
        """Wait until everything submitted so far is durable."""
        await self._idle.wait()

    async def run(self) -> None:
        """The writer task: runs until cancelled."""
        while True:
            await wait_for_work(self._wakeup, lambda: bool(self._queue))
            count = min(len(self._queue), self._max_batch)
            self._in_flight = [self._queue.popleft() for _ in range(count)]
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                await self._store.append(
                    [AppendRow(p.name, p.update, p.origin, p.author) for p in self._in_flight]
                )
            except StoreError as exc:
                self.failures += 1
                self.failures_in_a_row += 1
                delay = self._backoff.next_delay()
                log.warning("store write of %d updates failed (%s); retrying in %.2fs", count, exc, delay)
                self._queue.extendleft(reversed(self._in_flight))
                self._in_flight = []
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            self.failures_in_a_row = 0
            self.last_batch_seconds = loop.time() - started
            if self._on_batch is not None:
                self._on_batch(self.last_batch_seconds)
            self._committed(self._in_flight)
            self._in_flight = []
            if not self._queue:
                self._idle.set()

    def _committed(self, batch: list[_Pending]) -> None:
        self.batches += 1
        self.rows_written += len(batch)
        written: Counter[str] = Counter(p.name for p in batch)
        for name, rows in written.items():
            left = self._per_doc[name] - rows
            if left > 0:
                self._per_doc[name] = left
            else:
                del self._per_doc[name]
        for item in batch:
            for callback in item.callbacks:
                _run_callback(callback)
        for listener in self._listeners:
            listener(written)


def _run_callback(callback: Callback) -> None:
    try:
        callback()
    except Exception:
        log.exception("durability callback failed")
