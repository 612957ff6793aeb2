"""Compaction while a peer site is behind: what is kept for it stays bounded, each compaction's
work stays proportional to what was appended since the last, and the peer still gets it all."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pycrdt
import pytest

from crdt.compaction import compact
from server.compaction import Compactor
from server.store.memory import MemoryStore
from server.store.ports import AppendRow, Store
from server.store.sqlite import SQLiteStore


class CountingMerge:
    """The compactor's merge, remembering how many updates each call merged."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, updates: Sequence[bytes]) -> bytes:
        self.sizes.append(len(updates))
        return compact(updates)


def typed_by(authors: list[str], n: int) -> list[AppendRow]:
    """`n` one-character edits of a shared Text, the authors taking turns."""
    doc = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(n):
        text += str(i % 10)
    return [AppendRow("eng/doc", update, "", authors[i % len(authors)]) for i, update in enumerate(updates)]


def text_of(updates: Sequence[bytes]) -> str:
    doc = pycrdt.Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("t", type=pycrdt.Text))


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "samen.sqlite3")
    await backend.open()
    yield backend
    await backend.close()


async def test_rows_kept_for_a_lagging_peer_stay_bounded(store: Store) -> None:
    threshold = 50
    merge = CountingMerge()
    compactor = Compactor(store, threshold, merge=merge)
    cursor = 0  # the peer acknowledged nothing: it is partitioned

    async def peer_floor(name: str) -> int | None:
        return cursor

    compactor.add_floor(peer_floor)
    rows = typed_by(["ann@a", "bob@a", "cy@a"], 2000)
    for start in range(0, len(rows), threshold):
        await store.append(rows[start : start + threshold])
        await compactor.compact("eng/doc")
        # Kept: at most the catch-up rows (one per author) and what came since.
        assert await store.log_length("eng/doc") <= 3 + threshold
    assert compactor.catchup_merges >= len(rows) // threshold - 2
    # Each compaction merged what was appended since the last, plus a few catch-up rows.
    assert max(merge.sizes) <= 2 * threshold + 3 + 1

    # The peer, still at its cursor, finds everything it lacks in the log, authors kept.
    log = await store.read_log_after(cursor, 10_000)
    assert text_of([row.update for row in log]) == "0123456789" * 200
    assert {row.author for row in log} == {"ann@a", "bob@a", "cy@a"}

    cursor = await store.last_seq()  # it caught up and acknowledged everything
    await compactor.compact("eng/doc")
    assert await store.log_length("eng/doc") == 0
    assert text_of((await store.load("eng/doc")).all_updates()) == "0123456789" * 200


async def test_the_lowest_floor_wins(store: Store) -> None:
    compactor = Compactor(store, 1000)
    floors = {"a": 5, "b": 2, "c": None}
    for peer in floors:

        async def floor(name: str, peer: str = peer) -> int | None:
            return floors[peer]

        compactor.add_floor(floor)
    await store.append(typed_by(["ann@a"], 8))
    assert await compactor.compact("eng/doc") == 2  # rows 1-2 merged and gone, 3-8 kept
    assert await store.log_length("eng/doc") == 6


class HeldCompactions(MemoryStore):
    """A store whose first compaction waits for `release` once it has read the log."""

    def __init__(self) -> None:
        super().__init__()
        self.compacting = asyncio.Event()
        self.release = asyncio.Event()
        self.compacted = asyncio.Event()
        self.compactions = 0

    async def compact(
        self, name: str, merge: Callable[[list[bytes]], bytes], keep_after: int | None = None
    ) -> int:
        self.compactions += 1

        def held(updates: list[bytes]) -> bytes:
            if self.compactions == 1:
                loop.call_soon_threadsafe(self.compacting.set)
                asyncio.run_coroutine_threadsafe(self.release.wait(), loop).result(10)
            return merge(updates)

        loop = asyncio.get_running_loop()
        try:
            return await super().compact(name, held, keep_after)
        finally:
            self.compacted.set()


async def test_rows_appended_during_a_compaction_get_compacted_too() -> None:
    store = HeldCompactions()
    await store.open()
    compactor = Compactor(store, 5)
    rows = typed_by(["ann@a"], 12)
    async with asyncio.TaskGroup() as tasks:
        running = tasks.create_task(compactor.run())
        await store.append(rows[:5])
        compactor.note_appended(Counter({"eng/doc": 5}))
        await asyncio.wait_for(store.compacting.wait(), 10)
        await store.append(rows[5:])  # 7 more while the first compaction runs: due again
        compactor.note_appended(Counter({"eng/doc": 7}))
        store.release.set()
        async with asyncio.timeout(10):
            while store.compactions < 2 or await store.log_length("eng/doc"):
                store.compacted.clear()
                await store.compacted.wait()
        running.cancel()
    assert store.compactions == 2
    assert text_of((await store.load("eng/doc")).all_updates()) == "012345678901"
