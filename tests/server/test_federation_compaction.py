"""Compaction while a peer site is behind: what is kept for it stays bounded, each compaction's
work stays proportional to what was appended since the last, and the peer still gets it all."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from crdt.compaction import compact
from server.compaction import Compactor
from server.store.memory import MemoryStore
from server.store.ports import AppendRow, Store
from server.store.sqlite import SQLiteStore


class CountingMerge:
    """The compactor's merge, remembering how many updates each call merged, and what the
    merges of kept rows into catch-up rows were given (`watch` flags those)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.catchup = False
        self.catchup_rows = 0
        self.catchup_bytes = 0

    def __call__(self, updates: Sequence[bytes]) -> bytes:
        self.sizes.append(len(updates))
        if self.catchup:
            self.catchup_rows += len(updates)
            self.catchup_bytes += sum(len(update) for update in updates)
        return compact(updates)

    def watch(self, store: Store) -> None:
        merge_kept_rows = store.merge_kept_rows

        async def flagged(*args: Any) -> int:
            self.catchup = True
            try:
                return await merge_kept_rows(*args)
            finally:
                self.catchup = False

        store.merge_kept_rows = flagged  # type: ignore[method-assign]


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


class Peer:
    """A peer site's cursor, as the compaction floor federation sets."""

    def __init__(self) -> None:
        self.cursor = 0  # nothing acknowledged: it is partitioned

    async def floor(self, name: str) -> int | None:
        return self.cursor


async def partitioned(
    store: Store, threshold: int, rows: list[AppendRow]
) -> tuple[Compactor, CountingMerge, Peer]:
    """Compact as the server does (every `threshold` appends) while the peer is behind."""
    merge, peer = CountingMerge(), Peer()
    merge.watch(store)
    compactor = Compactor(store, threshold, merge=merge)
    compactor.add_floor(peer.floor)
    levels = 1 + math.ceil(math.log(len(rows) / threshold, compactor.fan_in))
    authors = len({row.author for row in rows})
    for start in range(0, len(rows), threshold):
        await store.append(rows[start : start + threshold])
        await compactor.compact("eng/doc")
        # Kept: at most the threshold's worth of rows as appended, and per author and level
        # at most fan_in catch-up rows.
        assert await store.log_length("eng/doc") <= threshold + authors * levels * compactor.fan_in
    return compactor, merge, peer


async def test_rows_kept_for_a_lagging_peer_stay_bounded(store: Store) -> None:
    threshold = 50
    rows = typed_by(["ann@a", "bob@a", "cy@a"], 2000)
    compactor, merge, peer = await partitioned(store, threshold, rows)
    assert compactor.catchup_merges >= len(rows) // (2 * threshold) - 1
    # Each compaction merged what was appended since the last, plus a few catch-up rows.
    assert max(merge.sizes) <= 2 * threshold + 3 * compactor.fan_in + 1

    # The peer, still at its cursor, finds everything it lacks in the log, authors kept.
    log = await store.read_log_after(peer.cursor, 10_000)
    assert text_of([row.update for row in log]) == "0123456789" * 200
    assert {row.author for row in log} == {"ann@a", "bob@a", "cy@a"}

    peer.cursor = await store.last_seq()  # it caught up and acknowledged everything
    await compactor.compact("eng/doc")
    assert await store.log_length("eng/doc") == 0
    assert text_of((await store.load("eng/doc")).all_updates()) == "0123456789" * 200


async def test_compaction_work_during_a_partition_is_linear() -> None:
    """Four times the edits, about four times the work (not sixteen, as when every compaction
    merged all the rows kept for the peer again), in rows and in bytes."""
    threshold = 50
    work: list[tuple[int, int, int]] = []
    for edits in (1000, 4000):
        store = MemoryStore()
        await store.open()
        _, merge, _ = await partitioned(store, threshold, typed_by(["ann@a", "bob@a"], edits))
        work.append((sum(merge.sizes), merge.catchup_rows, merge.catchup_bytes))
        await store.close()
    (rows_1k, catchup_1k, bytes_1k), (rows_4k, catchup_4k, bytes_4k) = work
    assert rows_4k <= 4.1 * rows_1k and catchup_4k <= 4.1 * catchup_1k
    # The bytes of catch-up rows are merged once per size class: log_8(4) = 2/3 more classes.
    assert bytes_4k <= 4 * 1.7 * bytes_1k


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
