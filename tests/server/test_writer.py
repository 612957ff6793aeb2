"""Group commit: batching, durability callbacks after commit, retry on failure, origins."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from server.errors import StoreUnavailable
from server.persistence import UpdateWriter
from server.store.memory import MemoryStore
from server.store.ports import LOCAL_ORIGIN, AppendRow


class FlakyStore(MemoryStore):
    """The memory store, whose next `fail` appends raise, to drive the retry path."""

    def __init__(self, fail: int = 0) -> None:
        super().__init__()
        self.rows: list[AppendRow] = []
        self.batches: list[int] = []
        self.fail = fail

    async def append(self, rows: Sequence[AppendRow]) -> None:
        await asyncio.sleep(0)
        if self.fail:
            self.fail -= 1
            raise StoreUnavailable("down")
        await super().append(rows)
        self.rows.extend(rows)
        self.batches.append(len(rows))


async def opened(store: FlakyStore) -> FlakyStore:
    await store.open()
    return store


async def test_updates_are_batched_and_acknowledged_after_commit() -> None:
    store = await opened(FlakyStore())
    writer = UpdateWriter(store)
    acked: list[int] = []
    flushed: Counter[str] = Counter()
    writer.add_flush_listener(flushed.update)
    for i in range(50):
        writer.submit("doc", bytes([i]), on_durable=lambda i=i: acked.append(i))
    assert writer.pending("doc") == 50 and acked == []
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(writer.run())
        await writer.drain()
        task.cancel()
    assert acked == list(range(50))
    assert store.batches == [50]  # one transaction for all of them
    assert writer.pending("doc") == 0 and flushed == {"doc": 50}


async def test_failed_writes_are_retried_and_nothing_acknowledged_before() -> None:
    store = await opened(FlakyStore(fail=2))
    writer = UpdateWriter(store, max_backoff=0.01)
    acked = asyncio.Event()
    writer.submit("doc", b"u", on_durable=acked.set)
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(writer.run())
        await asyncio.wait_for(acked.wait(), 5)
        task.cancel()
    assert writer.failures == 2 and store.rows == [AppendRow("doc", b"u", "", "")]


async def test_when_durable_waits_for_earlier_writes() -> None:
    store = await opened(FlakyStore())
    writer = UpdateWriter(store)
    events: list[str] = []
    writer.submit("doc", b"u", on_durable=lambda: events.append("update"))
    writer.when_durable(lambda: events.append("barrier"))
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(writer.run())
        await writer.drain()
        task.cancel()
    assert events == ["update", "barrier"]
    # With nothing pending the callback still runs, on the next loop iteration.
    done = asyncio.Event()
    writer.when_durable(done.set)
    await asyncio.wait_for(done.wait(), 1)


async def test_each_update_is_written_with_its_origin_and_author() -> None:
    store = await opened(FlakyStore(fail=1))  # and keeps them across a retry
    writer = UpdateWriter(store, max_backoff=0.01)
    writer.submit("doc", b"mine", author="ann@here")
    writer.submit("doc", b"theirs", origin="site-b", author="bob@site-b")
    writer.submit("other", b"also theirs", None, origin="site-c")
    writer.submit("doc", b"the server's", on_durable=None, origin=LOCAL_ORIGIN)
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(writer.run())
        await asyncio.wait_for(writer.drain(), 5)
        task.cancel()
    assert store.rows == [
        AppendRow("doc", b"mine", "", "ann@here"),
        AppendRow("doc", b"theirs", "site-b", "bob@site-b"),
        AppendRow("other", b"also theirs", "site-c", ""),
        AppendRow("doc", b"the server's", "", ""),
    ]
    assert [row.author for row in await store.read_log_after(0, 10)] == ["ann@here", "bob@site-b", "", ""]
    assert store.batches == [4] and writer.failures == 1


async def test_capture_collects_what_a_concurrent_load_could_miss() -> None:
    store = await opened(FlakyStore())
    writer = UpdateWriter(store)
    writer.submit("doc", b"queued before")
    writer.submit("other", b"not this document")
    captured = writer.capture("doc")
    writer.submit("doc", b"submitted during the load")
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(writer.run())
        await writer.drain()  # committed meanwhile: still in the capture
        task.cancel()
    writer.submit("doc", b"also during")
    writer.release("doc")
    writer.submit("doc", b"after the load")
    assert captured == [b"queued before", b"submitted during the load", b"also during"]
