"""A site of three real `samen serve` processes on one PostgreSQL and one Redis: fan-out,
presence, node death, Redis and PostgreSQL restarts, dropped messages, compaction."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pycrdt
import pytest

from clients.sync_client import SyncClient
from server.store.ports import AppendRow
from server.store.postgres import PostgresStore

from ..pg_cluster import PgCluster
from ..redis_server import RedisServer
from .site import SamenSite, eventually
from .tcp_balancer import TcpBalancer
from .yjs_driver import (
    Client,
    ClientKind,
    YjsDriver,
    awareness_names,
    map_set,
    text_insert,
    wait_converged,
)

pytestmark = pytest.mark.integration

FAST_RECONNECT = {"delay": 100, "minDelay": 100, "maxDelay": 500}


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    async with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def site(tmp_path: Path, pg_dsn: str, redis_server: RedisServer) -> AsyncIterator[SamenSite]:
    async with SamenSite(tmp_path, nodes=3, database_url=pg_dsn, redis_url=redis_server.url) as s:
        yield s


@pytest.fixture
async def driver() -> AsyncIterator[YjsDriver]:
    async with YjsDriver() as d:
        yield d


def text_of(client: SyncClient) -> str:
    return str(client.doc.get("t", type=pycrdt.Text))


def markers(text: str, tag: str) -> list[int]:
    return [int(n) for n in re.findall(rf"<{tag}(\d+)>", text)]


async def stored_text(dsn: str, name: str) -> str:
    """What PostgreSQL holds for `name`, read straight from the tables."""
    store = PostgresStore(dsn)
    await store.open()
    try:
        doc_log = await store.load(name)
    finally:
        await store.close()
    doc = pycrdt.Doc()
    for update in doc_log.all_updates():
        doc.apply_update(update)
    return str(doc.get("t", type=pycrdt.Text))


async def test_clients_on_three_nodes_converge_and_share_presence(site: SamenSite, driver: YjsDriver) -> None:
    doc = "site/page"
    kinds: list[ClientKind] = ["y-websocket", "hocuspocus-v4", "hocuspocus-v3", "y-websocket"]
    clients: list[Client] = []
    for i, kind in enumerate(kinds):
        node = site.nodes[i % 3]
        url = node.ws_url if kind == "y-websocket" else node.hocuspocus_url
        clients.append(await driver.connect(f"c{i}", kind, url, [doc], user=f"user{i}"))
    for client in clients:
        await client.wait_synced()
    for i, client in enumerate(clients):
        await client.edit(doc, [text_insert(f"<{client.cid}>"), map_set(client.cid, i)])
    content = await wait_converged(clients, doc)
    assert content["map"] == {f"c{i}": i for i in range(len(kinds))}

    names = [f"user{i}" for i in range(len(kinds))]
    for i, client in enumerate(clients):
        others = [n for n in names if n != f"user{i}"]
        await client.wait_for(lambda s, o=others: awareness_names(s, doc) == o, what=f"c{i} sees {others}")

    # Presence removal on node 1 (a close and a kill) reaches nodes 2 and 3.
    await clients[0].disconnect()
    await clients[3].kill()
    await clients[1].wait_for(lambda s: awareness_names(s, doc) == ["user2"], what="user0, user3 gone")
    await clients[2].wait_for(lambda s: awareness_names(s, doc) == ["user1"], what="user0, user3 gone")


async def test_killed_node_loses_no_acknowledged_edit(
    site: SamenSite, driver: YjsDriver, pg_dsn: str
) -> None:
    doc = "site/kill"
    async with TcpBalancer([node.port for node in site.nodes]) as balancer:
        url = f"ws://127.0.0.1:{balancer.port}"
        typists = []
        for i, kind in enumerate(["hocuspocus-v4", "hocuspocus-v3", "y-websocket"]):
            hocuspocus = kind != "y-websocket"
            endpoint = f"{url}/hocuspocus" if hocuspocus else f"{url}/ws"
            options = FAST_RECONNECT if hocuspocus else None
            typist = await driver.connect(f"t{i}", kind, endpoint, [doc], user=f"t{i}", options=options)
            typists.append(typist)
        for typist in typists:
            await typist.wait_synced()
        assert len(balancer.connections) == 3  # one typist per node

        # A writer on node 1 that counts its acknowledgements exactly.
        async with SyncClient(site.nodes[0].hocuspocus_url, doc, protocol="hocuspocus") as writer:
            await writer.wait_synced()
            await writer.wait_acknowledged()
            handshake_acks = writer.acknowledged
            text = writer.doc.get("t", type=pycrdt.Text)
            for i in range(300):
                text += f"<w{i}>"

            async def type_markers(client: Client, count: int) -> None:
                for i in range(count):
                    await client.edit(doc, [text_insert(f"<{client.cid}-{i}>", 0)])

            typing = asyncio.gather(*(type_markers(t, 40) for t in typists))
            await writer.wait_for(lambda: writer.acknowledged - handshake_acks >= 75, timeout=30)
            await site.nodes[0].kill9()
            acknowledged = writer.acknowledged - handshake_acks
            await typing

        content = await wait_converged(typists, doc, timeout=60)
        final = content["text"]["t"]
        for typist in typists:  # every keystroke of the typists survived, once
            assert sorted(markers(final, f"{typist.cid}-")) == list(range(40)), typist.cid
        written = markers(final, "w")
        assert written[:acknowledged] == list(range(acknowledged))
        assert written == list(range(len(written)))

    stored = await stored_text(pg_dsn, doc)
    assert markers(stored, "w")[:acknowledged] == list(range(acknowledged))


async def test_redis_restart_is_repaired_without_reconnecting(
    site: SamenSite, redis_server: RedisServer
) -> None:
    doc = "site/redis"
    clients = [SyncClient(node.ws_url, doc) for node in site.nodes]
    for client in clients:
        await client.__aenter__()
    try:
        for client in clients:
            await client.wait_synced()

        def type_round(tag: str) -> None:
            for i, client in enumerate(clients):
                client.doc.get("t", type=pycrdt.Text).insert(0, f"<{tag}{i}>")

        type_round("before")
        await asyncio.gather(
            *(c.wait_for(lambda c=c: len(markers(text_of(c), "before")) == 3) for c in clients)
        )
        await redis_server.stop()
        type_round("during")  # published into the void
        await redis_server.start()
        type_round("after")
        expected = {f"<{tag}{i}>" for tag in ("before", "during", "after") for i in range(3)}
        for client in clients:
            await client.wait_for(lambda c=client: set(re.findall(r"<\w+?\d>", text_of(c))) == expected, 30)
        assert not any(c.closed.is_set() for c in clients), "no client had to reconnect"
        repairs = [await site.metric(i, "samen_gap_repairs_total") for i in range(3)]
        reconnects = [await site.metric(i, "samen_backplane_reconnects_total") for i in range(3)]
        assert sum(repairs) > 0 and all(r >= 1 for r in reconnects), (repairs, reconnects)
    finally:
        for client in clients:
            await client.close()


async def test_dropped_backplane_message_is_repaired(site: SamenSite) -> None:
    doc = "site/drop"
    async with (
        SyncClient(site.nodes[0].ws_url, doc) as writer,
        SyncClient(site.nodes[1].ws_url, doc) as reader,
    ):
        await writer.wait_synced()
        await reader.wait_synced()
        await site.drop_next_backplane_updates(1, count=1)
        writer.doc.get("t", type=pycrdt.Text).insert(0, "lost on the way")
        # Nothing else is typed: only the heartbeat can reveal the gap.
        await reader.wait_for(lambda: text_of(reader) == "lost on the way", 20)
    metrics = await site.metrics(1)
    assert "samen_gap_repairs_total" in metrics
    assert await site.metric(1, "samen_gap_repairs_total") >= 1


async def test_compaction_bounds_a_100k_update_log(
    tmp_path: Path, pg_dsn: str, redis_server: RedisServer
) -> None:
    doc = "site/long"
    threshold = 500  # SAMEN_COMPACT_AFTER's default
    seed = PostgresStore(pg_dsn)
    await seed.open()
    try:
        source = pycrdt.Doc()
        text = source.get("t", type=pycrdt.Text)
        updates: list[bytes] = []
        source.observe(lambda event: updates.append(event.update))
        for i in range(100_000):
            text += "abcdefghij"[i % 10]
        for start in range(0, len(updates), 5000):
            await seed.append([AppendRow(doc, u) for u in updates[start : start + 5000]])
    finally:
        await seed.close()

    connection = await asyncpg.connect(pg_dsn)

    async def log_rows() -> int:
        rows: int = await connection.fetchval("SELECT count(*) FROM updates WHERE doc = $1", doc)
        return rows

    try:
        assert await log_rows() == 100_000
        async with SamenSite(tmp_path, nodes=1, database_url=pg_dsn, redis_url=redis_server.url) as site:
            async with SyncClient(site.nodes[0].hocuspocus_url, doc, protocol="hocuspocus") as client:
                await client.wait_for(lambda: len(text_of(client)) == 100_000, 60)

                async def compacted() -> bool:
                    return await log_rows() < threshold

                await eventually(compacted, 60, "the 100,000-row log merged into a snapshot")
                live = client.doc.get("t", type=pycrdt.Text)
                peak = 0
                for _ in range(8):  # 2,000 more edits, in bursts
                    for i in range(250):
                        live += "xyz"[i % 3]
                    await client.wait_acknowledged(30)
                    peak = max(peak, await log_rows())
                # Compaction runs beside the typing: the log never holds much more than the
                # threshold plus what arrives while one compaction runs.
                assert peak <= threshold + 2 * 250, peak
                assert await site.metric(0, "samen_compactions_total") >= 2
        tail = await log_rows()
        assert await connection.fetchval("SELECT count(*) FROM snapshots WHERE doc = $1", doc) == 1
    finally:
        await connection.close()

    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        doc_log = await store.load(doc)  # one snapshot plus the short tail
        assert doc_log.snapshot is not None and len(doc_log.updates) == tail <= peak
    finally:
        await store.close()
    assert len(await stored_text(pg_dsn, doc)) == 102_000


async def test_postgres_restart_loses_no_acknowledged_edit(tmp_path: Path, redis_server: RedisServer) -> None:
    doc = "site/pg"
    with PgCluster() as cluster:
        async with cluster.fresh_database() as dsn:
            async with (
                SamenSite(tmp_path, nodes=2, database_url=dsn, redis_url=redis_server.url) as site,
                SyncClient(site.nodes[0].hocuspocus_url, doc, protocol="hocuspocus") as writer,
                SyncClient(site.nodes[1].hocuspocus_url, doc, protocol="hocuspocus") as other,
            ):
                await writer.wait_synced()
                await other.wait_synced()
                text = writer.doc.get("t", type=pycrdt.Text)
                for i in range(100):
                    text += f"<w{i}>"
                await writer.wait_acknowledged(30)

                await asyncio.to_thread(cluster.stop, "fast")
                for i in range(100, 200):
                    text += f"<w{i}>"  # applied and fanned out, but cannot be acknowledged yet
                await other.wait_for(lambda: len(markers(text_of(other), "w")) == 200, 30)
                body = await site.wait_ready_status(0, 503)
                assert any("store" in problem for problem in body["problems"])
                acknowledged_while_down = writer.acknowledged

                await asyncio.to_thread(cluster.start)
                await writer.wait_acknowledged(60)  # acknowledgements resume
                assert writer.acknowledged > acknowledged_while_down
            assert markers(await stored_text(dsn, doc), "w") == list(range(200))


async def test_readyz_and_metrics(site: SamenSite, redis_server: RedisServer) -> None:
    status, body = await site.ready(0)
    assert status == 200 and body["ready"] is True
    exposition = await site.metrics(0)
    for name in (
        "samen_connections",
        "samen_rooms_open",
        "samen_updates_in_total",
        "samen_updates_out_total",
        "samen_store_write_seconds_bucket",
        "samen_store_queue_depth",
        "samen_backplane_published_total",
        "samen_backplane_received_total",
        "samen_gap_repairs_total",
    ):
        assert name in exposition, name
    await redis_server.stop()
    body = await site.wait_ready_status(0, 503)
    assert "backplane: disconnected" in body["problems"]
    await redis_server.start()
    await site.wait_ready_status(0, 200)
