"""The DocumentStore contract, run against every backend (the `store` fixture)."""

from __future__ import annotations

import asyncio

import pycrdt

from crdt.compaction import compact
from server.store.ports import DocumentLog, DocumentStore


def typing_updates(n: int) -> list[bytes]:
    doc = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(n):
        text += str(i % 10)
    return updates


async def test_empty_document_loads_empty(store: DocumentStore) -> None:
    log = await store.load("nothing-here")
    assert log.snapshot is None and log.updates == [] and log.all_updates() == []


async def test_append_keeps_order_per_document(store: DocumentStore) -> None:
    await store.append([("a", b"1"), ("b", b"x"), ("a", b"2")])
    await store.append([("a", b"3")])
    assert (await store.load("a")).updates == [b"1", b"2", b"3"]
    assert (await store.load("b")).updates == [b"x"]
    assert await store.log_length("a") == 3


def text_after_loading(log: DocumentLog) -> str:
    doc = pycrdt.Doc()
    for update in log.all_updates():
        doc.apply_update(update)
    return str(doc.get("t", type=pycrdt.Text))


async def test_compaction_merges_the_log_into_a_snapshot(store: DocumentStore) -> None:
    updates = typing_updates(10)
    await store.append([("doc", u) for u in updates])
    await store.append([("other", updates[0])])
    removed = await store.compact("doc", compact)
    assert removed == 10
    after = await store.load("doc")
    assert after.snapshot is not None and after.updates == []
    assert text_after_loading(after) == "0123456789"
    assert await store.log_length("doc") == 0
    assert await store.log_length("other") == 1  # other documents are untouched


async def test_rows_appended_during_compaction_are_kept(store: DocumentStore) -> None:
    updates = typing_updates(10)
    await store.append([("doc", u) for u in updates[:6]])
    merging = asyncio.Event()
    release = asyncio.Event()

    def slow_merge(batch: list[bytes]) -> bytes:
        merged = compact(batch)
        loop.call_soon_threadsafe(merging.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)
        return merged

    loop = asyncio.get_running_loop()
    compaction = asyncio.create_task(store.compact("doc", slow_merge))
    await asyncio.wait_for(merging.wait(), 10)
    await store.append([("doc", u) for u in updates[6:]])  # written while compacting
    release.set()
    assert await compaction == 6
    after = await store.load("doc")
    assert after.updates == updates[6:]
    assert text_after_loading(after) == "0123456789"


async def test_compactions_of_one_document_do_not_overlap(store: DocumentStore) -> None:
    await store.append([("doc", u) for u in typing_updates(5)])
    active = 0
    overlapped = False

    def merge(batch: list[bytes]) -> bytes:
        nonlocal active, overlapped
        active += 1
        overlapped = overlapped or active > 1
        try:
            return compact(batch)
        finally:
            active -= 1

    results = await asyncio.gather(store.compact("doc", merge), store.compact("doc", merge))
    assert sorted(results) == [0, 5] and not overlapped
    assert text_after_loading(await store.load("doc")) == "01234"


async def test_ping(store: DocumentStore) -> None:
    await store.ping()
