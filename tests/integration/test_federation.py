"""Federated sites on loopback: each with its own Redis, PostgreSQL database and nodes.

Site ids are chosen so that the order of dialing is known: a site dials every peer whose
id sorts after its own (amsterdam dials berlin and copenhagen; berlin dials copenhagen).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pycrdt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clients.sync_client import SyncClient
from protocol.sitelink import (
    Batch,
    BatchBody,
    BatchEntry,
    Hello,
    Refused,
    Want,
    decode_link_message,
    encode_batch_body,
    encode_link_message,
)
from server.federation.handshake import LinkClosed, dial_handshake
from server.federation.identity import SiteIdentity, create_identity
from server.federation.peers import Peer
from server.federation.transports import DialedTransport
from server.store.postgres import PostgresStore

from ..pg_cluster import PgCluster
from .federation import FederatedSite, Federation
from .site import eventually
from .yjs_driver import YjsDriver, awareness_names, text_insert, wait_converged

pytestmark = pytest.mark.integration

A, B, C = "amsterdam", "berlin", "copenhagen"
LINK_FRAME = 1 << 20  # the largest frame the test's fake sites say they accept


def text_of(client: SyncClient, name: str = "t") -> str:
    return str(client.doc.get(name, type=pycrdt.Text))


def markers(text: str, tag: str) -> list[int]:
    return [int(n) for n in re.findall(rf"<{tag}(\d+)>", text)]


async def stored_docs(site: FederatedSite) -> set[str]:
    connection = await asyncpg.connect(site.database_url)
    try:
        rows = await connection.fetch("SELECT doc FROM updates UNION SELECT doc FROM snapshots")
    finally:
        await connection.close()
    return {row["doc"] for row in rows}


@pytest.fixture
async def driver() -> AsyncIterator[YjsDriver]:
    async with YjsDriver() as d:
        yield d


async def test_three_sites_converge_and_share_presence(
    tmp_path: Path, pg_cluster: PgCluster, driver: YjsDriver
) -> None:
    spaces = {"eng": [A, B, C]}
    async with Federation(tmp_path, pg_cluster, {A: 1, B: 2, C: 1}, spaces) as fed:
        for site, peer in ((A, B), (A, C), (B, C)):
            await fed[site].wait_link(peer)
        doc = "eng/roadmap"
        ann = await driver.connect("ann", "y-websocket", fed[A].nodes[0].ws_url, [doc], user="ann")
        bob = await driver.connect("bob", "hocuspocus-v4", fed[B].nodes[1].hocuspocus_url, [doc], user="bob")
        cas = await driver.connect("cas", "y-websocket", fed[C].nodes[0].ws_url, [doc], user="cas")
        clients = [ann, bob, cas]
        for client in clients:
            await client.wait_synced()
        for round_ in range(5):
            for client in clients:
                await client.edit(doc, [text_insert(f"<{client.cid}{round_}>")])
        content = await wait_converged(clients, doc, timeout=60)
        for client in clients:
            assert sorted(markers(content["text"]["t"], client.cid)) == list(range(5))

        # Presence crosses sites: ann (amsterdam) is seen in copenhagen and berlin.
        await cas.wait_for(
            lambda s: awareness_names(s, doc) == ["ann", "bob"], timeout=30, what="cas sees all"
        )
        await bob.wait_for(
            lambda s: awareness_names(s, doc) == ["ann", "cas"], timeout=30, what="bob sees all"
        )
        await ann.disconnect()
        await cas.wait_for(lambda s: awareness_names(s, doc) == ["bob"], timeout=30, what="ann gone in cph")

        # A site's presence goes when its link does.
        await fed[A].block(C)
        await fed[B].block(C)
        await cas.wait_for(
            lambda s: awareness_names(s, doc) == [], timeout=30, what="remote presence dropped"
        )


async def test_partition_backfills_only_what_is_missing(tmp_path: Path, pg_cluster: PgCluster) -> None:
    async with Federation(tmp_path, pg_cluster, {A: 1, B: 1}, {"eng": [A, B]}) as fed:
        await fed[A].wait_link(B)
        a_url, b_url = fed[A].nodes[0].ws_url, fed[B].nodes[0].ws_url
        async with SyncClient(a_url, "eng/page") as on_a, SyncClient(b_url, "eng/page") as on_b:
            await on_a.wait_synced()
            await on_b.wait_synced()
            text_of(on_a)
            on_a.doc.get("t", type=pycrdt.Text).insert(0, "<before>")
            await on_b.wait_for(lambda: "<before>" in text_of(on_b), 30)
            await fed[A].wait_acknowledged_by(B)
            await fed[B].wait_acknowledged_by(A)
            sent_by_a = await fed[A].link_metric("samen_link_updates_sent_total", B)
            sent_by_b = await fed[B].link_metric("samen_link_updates_sent_total", A)

            await fed[A].block(B)  # amsterdam dials berlin: blocking it cuts the link
            await fed[A].wait_link(B, up=False)
            await fed[B].wait_link(A, up=False)
            a_text, b_text = on_a.doc.get("t", type=pycrdt.Text), on_b.doc.get("t", type=pycrdt.Text)
            for i in range(30):
                a_text += f"<a{i}>"  # one update each
            for i in range(20):
                b_text += f"<b{i}>"
            async with (
                SyncClient(a_url, "eng/new-in-amsterdam") as new_a,
                SyncClient(b_url, "eng/new-in-berlin") as new_b,
            ):
                await new_a.wait_synced()
                await new_b.wait_synced()
                for i in range(5):
                    new_a.doc.get("t", type=pycrdt.Text).insert(0, f"<na{i}>")
                    new_b.doc.get("t", type=pycrdt.Text).insert(0, f"<nb{i}>")
                await new_a.wait_for(lambda: len(markers(text_of(new_a), "na")) == 5)
                # Both sides kept working; make sure everything is stored before healing.
                await eventually(
                    lambda: _stored_rows(fed[A], "eng/new-in-amsterdam", 5), 30, "rows in amsterdam"
                )
                await eventually(lambda: _stored_rows(fed[B], "eng/new-in-berlin", 5), 30, "rows in berlin")
            await eventually(lambda: _stored_rows(fed[A], "eng/page", 31), 30, "page rows in amsterdam")
            await eventually(lambda: _stored_rows(fed[B], "eng/page", 20), 30, "page rows in berlin")

            async def backlog_shows_the_partition() -> bool:
                backlog = await fed[A].link_metric("samen_link_backlog_rows", B)
                return backlog >= 35 and await fed[A].link_metric("samen_link_lag_seconds", B) > 0

            await eventually(
                backlog_shows_the_partition, 30, "amsterdam's backlog toward berlin counts the rows"
            )

            await fed[A].unblock(B)
            expected = {f"<a{i}>" for i in range(30)} | {f"<b{i}>" for i in range(20)} | {"<before>"}
            for client in (on_a, on_b):
                await client.wait_for(lambda c=client: set(re.findall(r"<\w+>", text_of(c))) == expected, 60)
            for client in (on_a, on_b):  # nothing lost, nothing twice
                assert sorted(markers(text_of(client), "a")) == list(range(30))
                assert sorted(markers(text_of(client), "b")) == list(range(20))
        async with (
            SyncClient(b_url, "eng/new-in-amsterdam") as seen_b,
            SyncClient(a_url, "eng/new-in-berlin") as seen_a,
        ):
            await seen_b.wait_for(lambda: sorted(markers(text_of(seen_b), "na")) == list(range(5)), 30)
            await seen_a.wait_for(lambda: sorted(markers(text_of(seen_a), "nb")) == list(range(5)), 30)

        await fed[A].wait_acknowledged_by(B)
        await fed[B].wait_acknowledged_by(A)
        # The backfill sent exactly the updates made during the partition, each once.
        assert await fed[A].link_metric("samen_link_updates_sent_total", B) - sent_by_a == 30 + 5
        assert await fed[B].link_metric("samen_link_updates_sent_total", A) - sent_by_b == 20 + 5


async def _stored_rows(site: FederatedSite, doc: str, at_least: int) -> bool:
    connection = await asyncpg.connect(site.database_url)
    try:
        rows: int = await connection.fetchval(
            "SELECT count(*) FROM updates WHERE doc = $1 AND origin = ''", doc
        )
    finally:
        await connection.close()
    return rows >= at_least


async def test_site_restarted_during_partition_catches_up(tmp_path: Path, pg_cluster: PgCluster) -> None:
    async with Federation(tmp_path, pg_cluster, {A: 1, B: 2}, {"eng": [A, B]}) as fed:
        await fed[A].wait_link(B)
        await fed[A].block(B)
        await fed[A].wait_link(B, up=False)
        async with SyncClient(fed[B].nodes[0].hocuspocus_url, "eng/restart", protocol="hocuspocus") as on_b:
            await on_b.wait_synced()
            for i in range(10):
                on_b.doc.get("t", type=pycrdt.Text).insert(0, f"<b{i}>")
            await on_b.wait_acknowledged(30)  # durable in berlin before it goes down
        for node in fed[B].nodes:  # the whole site restarts while cut off
            assert await node.stop() == 0
        async with SyncClient(fed[A].nodes[0].ws_url, "eng/restart") as on_a:
            await on_a.wait_synced()
            for i in range(10):
                on_a.doc.get("t", type=pycrdt.Text).insert(0, f"<a{i}>")
            for node in fed[B].nodes:
                await node.start()
            await fed[A].unblock(B)
            await on_a.wait_for(lambda: sorted(markers(text_of(on_a), "b")) == list(range(10)), 60)
        async with SyncClient(fed[B].nodes[1].ws_url, "eng/restart") as back_on_b:
            await back_on_b.wait_for(lambda: sorted(markers(text_of(back_on_b), "a")) == list(range(10)), 60)
            assert sorted(markers(text_of(back_on_b), "b")) == list(range(10))


async def test_unshared_space_never_reaches_the_other_site(tmp_path: Path, pg_cluster: PgCluster) -> None:
    spaces = {"eng": [A, B, C], "hr": [A, B]}
    async with Federation(tmp_path, pg_cluster, {A: 1, B: 1, C: 1}, spaces) as fed:
        await fed[A].wait_link(B)
        await fed[A].wait_link(C)
        async with (
            SyncClient(fed[A].nodes[0].ws_url, "hr/salaries") as hr,
            SyncClient(fed[A].nodes[0].ws_url, "eng/notes") as eng,
        ):
            await hr.wait_synced()
            await eng.wait_synced()
            hr.doc.get("t", type=pycrdt.Text).insert(0, "confidential")
            eng.doc.get("t", type=pycrdt.Text).insert(0, "public")
            async with SyncClient(fed[B].nodes[0].ws_url, "hr/salaries") as hr_b:
                await hr_b.wait_for(lambda: text_of(hr_b) == "confidential", 30)
            async with SyncClient(fed[C].nodes[0].ws_url, "eng/notes") as eng_c:
                await eng_c.wait_for(lambda: text_of(eng_c) == "public", 30)
        await fed[A].wait_acknowledged_by(C)

        # Copenhagen asks amsterdam for the HR page over its real link: refused and counted.
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            response = await http.post(
                f"{fed[C].nodes[0].http_url}/debug/links/{A}/want", params={"doc": "hr/salaries"}
            )
            assert response.status_code == 200, response.text

        async def refused() -> bool:
            return await fed[A].link_metric("samen_link_refused_total", C) >= 1

        await eventually(refused, 30, "amsterdam refused copenhagen's request")
        await eventually(lambda: _refused_by(fed[C], A), 30, "copenhagen saw the refusal")
        assert "hr/salaries" not in await stored_docs(fed[C])
        assert "eng/notes" in await stored_docs(fed[C])
        assert "hr/salaries" in await stored_docs(fed[B])
        assert "refused 'hr/salaries'" in fed[A].nodes[0].log_text()


async def _refused_by(site: FederatedSite, peer: str) -> bool:
    return await site.link_metric("samen_link_refused_by_peer_total", peer) >= 1


async def test_forged_peers_are_refused(tmp_path: Path, pg_cluster: PgCluster) -> None:
    # "aardvark" sorts before amsterdam, so it is the one that dials: the test plays it.
    aardvark = create_identity("aardvark", tmp_path / "aardvark.pem")
    mallory = create_identity("mallory", tmp_path / "mallory.pem")
    extra = {"aardvark": aardvark.public_key.to_text()}
    async with Federation(tmp_path, pg_cluster, {A: 1}, {"eng": [A, "aardvark"]}, extra_peers=extra) as fed:
        site = fed[A]
        url = site.urls[0]
        amsterdam = Peer(A, (url,), _public_key(site))

        # 1. The right name with the wrong key: refused at the handshake.
        impostor = SiteIdentity("aardvark", mallory.private_key)
        async with connect(url) as conn:
            with pytest.raises(LinkClosed):
                await dial_handshake(DialedTransport(conn), impostor, amsterdam, LINK_FRAME)
            assert conn.close_code == 4401 and "wrong key" in (conn.close_reason or "")

        # 2. Authenticated, then a batch whose signature does not verify.
        forged = BatchBody("aardvark", 1, 1, (BatchEntry("eng/forged", "", _hello_update()),))
        await _send_after_handshake(
            url, aardvark, amsterdam, Batch(encode_batch_body(forged), b"\x00" * 64), 1008
        )

        # 3. Authenticated, then a batch that claims to come from another site.
        claims = BatchBody(A, 1, 1, (BatchEntry("eng/claimed", "", _hello_update()),))
        body = encode_batch_body(claims)
        await _send_after_handshake(url, aardvark, amsterdam, Batch(body, aardvark.sign(body)), 1008)

        # 4. A request and a push for a space aardvark does not share: refused, not stored.
        async with connect(url) as conn:
            sealed = (await dial_handshake(DialedTransport(conn), aardvark, amsterdam, LINK_FRAME)).transport
            await sealed.send(encode_link_message(Want("hr/secret", b"\x00")))
            entry = BatchEntry("hr/pushed", "mallory@aardvark", _hello_update())
            pushed = encode_batch_body(BatchBody("aardvark", 1, 1, (entry,)))
            await sealed.send(encode_link_message(Batch(pushed, aardvark.sign(pushed))))
            refusals: set[str] = set()
            async with asyncio.timeout(10):
                while len(refusals) < 2:  # amsterdam also sends its (empty) inventory of eng
                    message = decode_link_message(await sealed.recv())
                    if isinstance(message, Refused):
                        refusals.add(message.document)
            assert refusals == {"hr/secret", "hr/pushed"}

        stored = await stored_docs(site)
        assert not stored & {"eng/forged", "eng/claimed", "hr/pushed"}
        log = site.nodes[0].log_text()
        assert "wrong key" in log
        assert "batch signature does not verify" in log
        assert "batch claims to come from 'amsterdam'" in log


def _public_key(site: FederatedSite):  # type: ignore[no-untyped-def]
    from server.federation.identity import PublicKey

    return PublicKey.from_text(site.public_key)


def _hello_update() -> bytes:
    return bytes.fromhex("01 01 01 00 04 01 01 74 02 68 69 00")


async def _send_after_handshake(
    url: str, identity: SiteIdentity, peer: Peer, batch: Batch, code: int
) -> None:
    async with connect(url) as conn:
        sealed = (await dial_handshake(DialedTransport(conn), identity, peer, LINK_FRAME)).transport
        await sealed.send(encode_link_message(batch))
        with pytest.raises(LinkClosed):
            async with asyncio.timeout(10):
                while True:
                    message = decode_link_message(await sealed.recv())
                    assert not isinstance(message, Batch), "nothing should come back but the close"
        assert conn.close_code == code


async def test_link_moves_to_another_node_when_its_holder_dies(tmp_path: Path, pg_cluster: PgCluster) -> None:
    async with Federation(tmp_path, pg_cluster, {B: 2, C: 1}, {"eng": [B, C]}) as fed:
        await fed[B].wait_link(C)
        texts = await fed[B].metrics()
        holder = next(i for i, text in enumerate(texts) if f'samen_link_up{{peer="{C}"}} 1.0' in text)
        survivor = 1 - holder
        await fed[B].nodes[holder].kill9()
        await fed[B].wait_link(C)  # the surviving node took the lease and dialed
        async with (
            SyncClient(fed[B].nodes[survivor].ws_url, "eng/failover") as on_b,
            SyncClient(fed[C].nodes[0].ws_url, "eng/failover") as on_c,
        ):
            await on_b.wait_synced()
            await on_c.wait_synced()
            on_b.doc.get("t", type=pycrdt.Text).insert(0, "still replicating")
            await on_c.wait_for(lambda: text_of(on_c) == "still replicating", 30)
            on_c.doc.get("t", type=pycrdt.Text).insert(0, "both ways: ")
            await on_b.wait_for(lambda: text_of(on_b) == "both ways: still replicating", 30)


async def _count(site: FederatedSite, sql: str, *args: object) -> int:
    connection = await asyncpg.connect(site.database_url)
    try:
        return int(await connection.fetchval(sql, *args))
    finally:
        await connection.close()


async def test_a_peer_added_later_gets_every_document_compacted_before(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    env = {"SAMEN_COMPACT_AFTER": "5"}
    async with Federation(tmp_path, pg_cluster, {A: 1}, {"eng": [A], "hr": [A]}, env=env) as fed:
        pages = {f"eng/page-{i}": "".join(f"<{i}.{j}>" for j in range(12)) for i in range(3)}
        url = fed[A].nodes[0].ws_url
        for name, text in {**pages, "hr/salaries": "confidential"}.items():
            async with SyncClient(url, name) as client:
                await client.wait_synced()
                shared = client.doc.get("t", type=pycrdt.Text)
                for part in re.findall(r"<[^>]+>|\w+", text):
                    shared += part  # one update each
        # Amsterdam, alone, compacted them: most of each page is in a snapshot only.
        for name in pages:
            seen: list[tuple[int, int, float]] = []

            async def compacted(name: str = name, seen: list[tuple[int, int, float]] = seen) -> bool:
                snapshots = await _count(fed[A], "SELECT count(*) FROM snapshots WHERE doc = $1", name)
                rows = await _count(fed[A], "SELECT count(*) FROM updates WHERE doc = $1", name)
                seen[:] = [(snapshots, rows, await fed[A].metric("samen_compactions_total"))]
                return snapshots == 1 and rows < 5

            try:
                await eventually(compacted, 30, f"{name} compacted")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; (snapshots, rows, compactions) = {seen}") from None

        await fed.add_site(B, 1, {"eng": [A, B], "hr": [A]})  # amsterdam restarts with berlin
        await fed[A].wait_link(B)
        for name, text in pages.items():
            async with SyncClient(fed[B].nodes[0].ws_url, name) as on_b:
                await on_b.wait_for(lambda on_b=on_b, text=text: text_of(on_b) == text, 30)
        assert await fed[A].link_metric("samen_link_inventory_documents_sent_total", B) == len(pages)
        assert "hr/salaries" not in await stored_docs(fed[B])
        await fed[A].wait_acknowledged_by(B)
        assert await _count(fed[A], "SELECT count(*) FROM federation_spaces WHERE peer = $1", B) == 1


async def test_a_40_mib_document_is_backfilled_to_a_new_peer(tmp_path: Path, pg_cluster: PgCluster) -> None:
    # 40 MiB is above what berlin's link endpoint takes in one frame (SAMEN_MAX_MESSAGE_SIZE,
    # 16 MiB by default): its whole state crosses in fragments.
    piece = 8 * 1024 * 1024
    async with Federation(tmp_path, pg_cluster, {A: 1}, {"eng": [A]}) as fed:
        async with SyncClient(fed[A].nodes[0].ws_url, "eng/big") as client:
            await client.wait_synced()
            shared = client.doc.get("t", type=pycrdt.Text)
            for i in range(5):  # each update below the 16 MiB a client may send
                shared += "abcde"[i] * piece
        expected = "".join(letter * piece for letter in "abcde")
        await eventually(lambda: _stored_rows(fed[A], "eng/big", 5), 60, "the 40 MiB stored in amsterdam")

        await fed.add_site(B, 1, {"eng": [A, B]})
        await fed[A].wait_link(B)
        await fed[A].wait_acknowledged_by(B, timeout=120)
        assert await fed[A].link_metric("samen_link_inventory_documents_sent_total", B) == 1
        assert await fed[B].link_metric("samen_link_rejections_total", A) == 0
        store = PostgresStore(fed[B].database_url)
        await store.open()
        try:
            stored = await store.load("eng/big")
        finally:
            await store.close()
        doc = pycrdt.Doc()
        for update in stored.all_updates():
            doc.apply_update(update)
        text = str(doc.get("t", type=pycrdt.Text))
        assert len(text) == len(expected) and text == expected


async def test_compaction_during_a_long_partition_stays_bounded(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    env = {"SAMEN_COMPACT_AFTER": "20"}
    async with Federation(tmp_path, pg_cluster, {A: 1, B: 1}, {"eng": [A, B]}, env=env) as fed:
        await fed[A].wait_link(B)
        await fed[A].block(B)
        await fed[A].wait_link(B, up=False)
        async with SyncClient(fed[A].nodes[0].ws_url, "eng/long") as on_a:
            await on_a.wait_synced()
            shared = on_a.doc.get("t", type=pycrdt.Text)
            for i in range(300):
                shared += f"<a{i}>"  # one update each, all kept for berlin
            await eventually(lambda: _stored_rows(fed[A], "eng/long", 1), 30, "amsterdam stores them")

            async def bounded() -> bool:
                merges = await fed[A].metric("samen_compaction_catchup_merges_total")
                rows = await _count(fed[A], "SELECT count(*) FROM updates WHERE doc = 'eng/long'")
                kept = await fed[A].link_metric("samen_link_kept_rows", B)
                return merges >= 1 and rows <= 2 * 20 + 1 and 0 < kept <= 2 * 20 + 1

            # 300 rows kept for berlin, but never more than the threshold's worth at a time.
            await eventually(bounded, 30, "amsterdam merged the rows kept for berlin")
            await fed[A].unblock(B)
            async with SyncClient(fed[B].nodes[0].ws_url, "eng/long") as on_b:
                await on_b.wait_for(lambda: sorted(markers(text_of(on_b), "a")) == list(range(300)), 60)
        await fed[A].wait_acknowledged_by(B)
        await eventually(
            lambda: _metric_is(fed[A], "samen_link_kept_rows", B, 0), 30, "nothing kept for berlin any more"
        )


async def _metric_is(site: FederatedSite, name: str, peer: str, value: float) -> bool:
    return await site.link_metric(name, peer) == value


async def test_a_peer_speaking_link_version_2_is_refused(tmp_path: Path, pg_cluster: PgCluster) -> None:
    # A site of the previous release (no ephemeral keys, frames not sealed) dials amsterdam.
    old = create_identity("aardvark", tmp_path / "aardvark.pem")
    extra = {"aardvark": old.public_key.to_text()}
    async with Federation(tmp_path, pg_cluster, {A: 1}, {"eng": [A, "aardvark"]}, extra_peers=extra) as fed:
        async with connect(fed[A].urls[0]) as conn:
            await conn.send(encode_link_message(Hello("samen-link/2", "aardvark", A, b"\x07" * 32)))
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    await conn.recv()
        assert conn.close_code == 4426
        assert (
            conn.close_reason
            == "site link version 'samen-link/2' is not supported: this site speaks samen-link/3"
        )
        log = fed[A].nodes[0].log_text()
        assert "refused a site link from 127.0.0.1: site link version 'samen-link/2' is not supported" in log
