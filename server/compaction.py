"""Compaction in its own task: a document whose log grew past a threshold gets its log
merged into a snapshot, under the store's per-document lock, never in the write path."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from crdt.compaction import compact
from crdt.errors import CrdtError

from .errors import StoreError
from .loops import wait_for_work
from .store.ports import DocumentStore

__all__ = ["Compactor"]

log = logging.getLogger(__name__)


class Compactor:
    def __init__(
        self,
        store: DocumentStore,
        threshold: int,
        floor: Callable[[str], Awaitable[int | None]] | None = None,
        merge: Callable[[Sequence[bytes]], bytes] = compact,
    ) -> None:
        self._store = store
        self._merge = merge  # blocking; the store runs it on a worker thread
        # Federation: log rows after this seq must stay (a peer has not acknowledged them).
        self.floor = floor
        self._threshold = threshold
        self._log_lengths: Counter[str] = Counter()
        self._due: dict[str, None] = {}  # insertion-ordered set
        self._wakeup = asyncio.Event()
        self._broken: set[str] = set()
        self.compactions = 0

    def note_loaded(self, name: str, log_length: int) -> None:
        self._broken.discard(name)
        self._log_lengths[name] = log_length
        self._check(name)

    def note_appended(self, rows: Counter[str]) -> None:
        for name, count in rows.items():
            self._log_lengths[name] += count
            self._check(name)

    def forget(self, name: str) -> None:
        """The room unloaded; its length is re-read at the next load."""
        if name not in self._due:
            self._log_lengths.pop(name, None)

    def _check(self, name: str) -> None:
        if self._log_lengths[name] >= self._threshold and name not in self._broken:
            self._due[name] = None
            self._wakeup.set()

    async def run(self) -> None:
        while True:
            await wait_for_work(self._wakeup, lambda: bool(self._due))
            name = next(iter(self._due))
            try:
                await self.compact(name)
            except StoreError as exc:
                log.warning("compaction of %r failed: %s; will retry on the next write", name, exc)
            finally:
                self._due.pop(name, None)

    async def compact(self, name: str) -> int:
        """Merge the log of `name` into its snapshot; returns the number of rows removed."""
        keep_after = await self.floor(name) if self.floor is not None else None
        counted = self._log_lengths[name]
        try:
            removed = await self._store.compact(name, self._merge, keep_after=keep_after)
        except CrdtError as exc:
            # Leave the log untouched: a bad row must not take good ones with it.
            log.error("cannot compact %r: %s; its log is left as it is", name, exc.reason)
            self._broken.add(name)
            return 0
        self.compactions += 1
        # Everything read is in the snapshot now, also rows kept in the log for a peer site
        # that has not acknowledged them: count only what was appended since.
        self._log_lengths[name] = max(0, self._log_lengths[name] - counted)
        log.debug("compacted %r: %d log rows merged into its snapshot", name, removed)
        return removed
