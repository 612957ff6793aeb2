"""Compaction in its own task: a document whose log grew past a threshold gets its log
merged into a snapshot, under the store's per-document lock, never in the write path.

Floors (`add_floor`) keep rows in the log: federation's keeps what a peer site has not
acknowledged. During a long partition those kept rows pile up. Two things keep the work
linear in what was appended (the issue was: every compaction merged every kept row again,
quadratic over a partition):

- A compaction merges the snapshot and the rows not in it yet only; kept rows are marked as
  in the snapshot and are not read again (`DocumentStore.compact`).
- Kept rows are merged into catch-up rows in size classes (`plan_catchup`, run by
  `DocumentStore.merge_kept_rows`): rows as appended (level 0) are merged, one catch-up row
  per (origin, author), once more than `threshold` of them are kept; a catch-up row of level
  n + 1 is made only of CATCHUP_FAN_IN rows of level n of one author. Catch-up rows are
  never merged with new rows, so each appended row is merged into a catch-up row once, and
  again only when its size class fills up.

The bound, for a partition of N appends: level-0 merges happen at most once per `threshold`
appends (each needs more than `threshold` new rows), so at most N / threshold of them; a
level-n row spans CATCHUP_FAN_IN ** (n - 1) of them, so n <= 1 + log_F(N / threshold). Each
appended row is merged at most 1 + log_F(N / threshold) times into catch-up rows (with F = 8
and threshold = 500: at most 3 times for N up to 128,000), plus once into the snapshot
(catch-up rows are made of rows in the snapshot, so they are in it too): O(N log_F N) in
total, O(N) for any partition of practical length (benchmarks/partition_compaction.py).
What is kept stays bounded too: at most `threshold` level-0 rows (plus what came since the
last compaction) and fewer than F + 1 rows per author and level.
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
from .store.ports import DocumentStore, KeptRow

__all__ = ["CATCHUP_FAN_IN", "Compactor", "Floor", "plan_catchup"]

# How many catch-up rows of one size class (and author) are merged into one of the next.
CATCHUP_FAN_IN = 8

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
        self.fan_in = CATCHUP_FAN_IN  # catch-up rows of a class merged into one (see plan_catchup)
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

    def _plan(self, kept: Sequence[KeptRow]) -> list[list[int]]:
        return plan_catchup(kept, self._threshold, self.fan_in)

    async def compact(self, name: str) -> int:
        """Merge the log of `name` into its snapshot; returns the number of rows removed."""
        keep_after = await self._keep_after(name)
        counted = self._log_lengths[name]
        try:
            removed = await self._store.compact(name, self._merge, keep_after=keep_after)
            if keep_after is not None:
                squashed = await self._store.merge_kept_rows(name, self._merge, keep_after, self._plan)
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


def plan_catchup(kept: Sequence[KeptRow], threshold: int, fan_in: int = CATCHUP_FAN_IN) -> list[list[int]]:
    """Which kept rows to merge into catch-up rows (see the module's docstring for the bound):
    every row of level 0 once more than `threshold` of them are kept, one group per (origin,
    author); and, per (origin, author) and level n >= 1, the rows of that level once there
    are `fan_in` of them. Catch-up rows are never grouped with rows of another level."""
    classes: dict[tuple[str, str, int], list[int]] = {}
    fresh = sum(1 for row in kept if row.level == 0)
    for row in kept:
        if row.level > 0 or fresh > threshold:
            classes.setdefault((row.origin, row.author, row.level), []).append(row.seq)
    return [seqs for (_, _, level), seqs in classes.items() if level == 0 or len(seqs) >= fan_in]
