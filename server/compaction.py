"""Compaction in its own task: a document whose log grew past a threshold gets its log
merged into a snapshot, under the store's per-document lock, never in the write path.

Floors (`add_floor`) keep rows in the log: federation's keeps what a peer site has not
acknowledged. During a long partition those kept rows would pile up, and every compaction
would merge them all again; so once more than `threshold` rows are kept, they are merged
into catch-up rows, one per (origin, author) (`DocumentStore.squash_log_after`): what is
kept stays bounded and each compaction's work grows with what was appended since the last.
"""

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

__all__ = ["Compactor", "Floor"]

Floor = Callable[[str], Awaitable[int | None]]

log = logging.getLogger(__name__)


class Compactor:
    def __init__(
        self,
        store: DocumentStore,
        threshold: int,
        merge: Callable[[Sequence[bytes]], bytes] = compact,
    ) -> None:
        self._store = store
        self._merge = merge  # blocking; the store runs it on a worker thread
        self._floors: list[Floor] = []
        self._threshold = threshold
        self._log_lengths: Counter[str] = Counter()
        self._due: dict[str, None] = {}  # insertion-ordered set
        self._wakeup = asyncio.Event()
        self._broken: set[str] = set()
        # Documents whose last compaction left rows in the log for a floor (a peer behind):
        # compacted again as soon as the floors move (`floors_moved`), not 500 appends later.
        self._held_back: set[str] = set()
        self.compactions = 0
        self.catchup_merges = 0  # kept rows merged into catch-up rows: how often...
        self.catchup_rows_merged = 0  # ...and how many rows

    def add_floor(self, floor: Floor) -> None:
        """`floor(document)`: log rows after this seq must stay (None: no need). The lowest
        floor of all wins."""
        self._floors.append(floor)

    async def _keep_after(self, name: str) -> int | None:
        floors = [seq for floor in self._floors if (seq := await floor(name)) is not None]
        return min(floors) if floors else None

    def note_loaded(self, name: str, log_length: int) -> None:
        self._broken.discard(name)
        self._log_lengths[name] = log_length
        self._check(name)

    def note_appended(self, rows: Counter[str]) -> None:
        for name, count in rows.items():
            self._log_lengths[name] += count
            self._check(name)

    def floors_moved(self) -> None:
        """A floor rose (a peer acknowledged what was kept for it): compact the documents
        that kept rows for it now, so what was kept goes into the snapshot at once."""
        for name in self._held_back:
            if name not in self._broken:
                self._due[name] = None
        self._held_back.clear()
        if self._due:
            self._wakeup.set()

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
                continue
            finally:
                self._due.pop(name, None)
            # Rows appended during the compaction found it due already: look again, or a
            # document that stops being written keeps them in its log.
            self._check(name)

    async def compact(self, name: str) -> int:
        """Merge the log of `name` into its snapshot; returns the number of rows removed."""
        keep_after = await self._keep_after(name)
        counted = self._log_lengths[name]
        try:
            removed = await self._store.compact(name, self._merge, keep_after=keep_after)
            if keep_after is not None:
                squashed = await self._store.squash_log_after(name, self._merge, keep_after, self._threshold)
                if squashed:
                    self.catchup_merges += 1
                    self.catchup_rows_merged += squashed
                    log.info("%r: %d rows kept for peers merged into catch-up rows", name, squashed)
        except CrdtError as exc:
            # Leave the log untouched: a bad row must not take good ones with it.
            log.error("cannot compact %r: %s; its log is left as it is", name, exc.reason)
            self._broken.add(name)
            return 0
        self.compactions += 1
        if keep_after is not None and await self._store.log_length(name) > 0:
            self._held_back.add(name)
        # Everything read is in the snapshot now, also rows kept in the log for a peer site
        # that has not acknowledged them: count only what was appended since.
        self._log_lengths[name] = max(0, self._log_lengths[name] - counted)
        log.debug("compacted %r: %d log rows merged into its snapshot", name, removed)
        return removed
