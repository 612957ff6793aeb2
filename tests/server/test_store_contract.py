"""The DocumentStore contract, run against every backend (the `store` fixture)."""

from __future__ import annotations

import asyncio

import pycrdt

from crdt.compaction import compact
from server.store.ports import DocumentStore


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


async def test_snapshot_replaces_covered_rows_only(store: DocumentStore) -> None:
    updates = typing_updates(10)
    await store.append([("doc", u) for u in updates[:6]])
    log = await store.load("doc")
    await store.append([("doc", u) for u in updates[6:]])  # written while "compacting"
    removed = await store.replace_with_snapshot("doc", compact(log.updates), log.last_seq)
    assert removed == 6
    after = await store.load("doc")
    assert after.snapshot is not None and after.updates == updates[6:]
    assert await store.log_length("doc") == 4
    doc = pycrdt.Doc()
    for update in after.all_updates():
        doc.apply_update(update)
    assert str(doc.get("t", type=pycrdt.Text)) == "0123456789"


async def test_compaction_lock_serialises(store: DocumentStore) -> None:
    order: list[str] = []
    inside = asyncio.Event()

    async def first() -> None:
        async with store.compaction_lock("doc"):
            order.append("first in")
            inside.set()
            await asyncio.sleep(0)  # yield while holding the lock
            order.append("first out")

    async def second() -> None:
        await inside.wait()
        async with store.compaction_lock("doc"):
            order.append("second in")

    await asyncio.gather(first(), second())
    assert order == ["first in", "first out", "second in"]


async def test_ping(store: DocumentStore) -> None:
    await store.ping()
