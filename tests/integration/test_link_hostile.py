"""A peer site that lies, holding a real site key: the test plays "aardvark", which dials
amsterdam (its id sorts first) and speaks the link protocol with the project's codecs.

Whatever it sends is refused or bounded, logged (escaped, short) and counted; nothing
harmful is stored; a local user's edits all survive; the document loads after a restart,
also with an update in its log that an older release stored and the CRDT core refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pycrdt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from clients.sync_client import SyncClient
from protocol.awareness import AwarenessEntry, encode_awareness_update
from protocol.lib0 import Encoder
from protocol.link_channel import MAC_BYTES
from protocol.sitelink import (
    LINK_VERSION,
    Ack,
    Batch,
    BatchBody,
    BatchEntry,
    Hello,
    Presence,
    Refused,
    SiteLinkMessage,
    Want,
    decode_link_message,
    encode_batch_body,
    encode_link_message,
    fragments,
)
from server.federation.handshake import PRE_AUTH_MAX_FRAME, SealedTransport, dial_handshake
from server.federation.identity import PublicKey, SiteIdentity, create_identity
from server.federation.peers import Peer
from server.federation.service import MAX_HANDSHAKES
from server.federation.transports import DialedTransport

from ..pg_cluster import PgCluster
from .federation import FederatedSite, Federation
from .site import eventually, metric_value

pytestmark = pytest.mark.integration

A, FAKE = "amsterdam", "aardvark"
DOC = "eng/page"
MIB = 1024 * 1024
FAKE_FRAME = 1 << 20  # the largest frame the fake site says it accepts


def text_of(client: SyncClient) -> str:
    return str(client.doc.get("t", type=pycrdt.Text))


def bad_parent_update(client: int, parent_client: int) -> bytes:
    """19 bytes that decode (the strict reader passes them) but name a string as the parent
    of a new item: Yrs refuses to integrate it into a document holding that string."""
    e = Encoder().write_var_uint(1).write_var_uint(1).write_var_uint(client).write_var_uint(0)
    e.write_var_uint(0x04).write_var_uint(0).write_var_uint(parent_client).write_var_uint(0)
    return e.write_var_string("x").write_var_uint(0).to_bytes()


def squatting_update(victim: int, clock: int) -> bytes:
    """A string struct under the victim's client id at its next clock, after its last item."""
    e = Encoder().write_var_uint(1).write_var_uint(1).write_var_uint(victim).write_var_uint(clock)
    e.write_raw(b"\x84").write_var_uint(victim).write_var_uint(clock - 1)
    return e.write_var_string("zz").write_var_uint(0).to_bytes()


def honest_update(text: str) -> bytes:
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.get("t", type=pycrdt.Text).insert(0, text)
    return doc.get_update()


class FakeSite:
    """The test's end of a link: sends anything, collects what amsterdam says."""

    def __init__(self, transport: SealedTransport, max_frame: int, identity: SiteIdentity) -> None:
        self.transport = transport  # a lying peer still holds its key: it seals its frames
        self.max_frame = max_frame - MAC_BYTES
        self.identity = identity
        self.refused: list[Refused] = []
        self.acks: list[int] = []
        self.reading = asyncio.Event()
        self.reading.set()
        self.changed = asyncio.Event()

    async def send(self, message: SiteLinkMessage) -> None:
        for frame in fragments(encode_link_message(message), self.max_frame):
            await self.transport.send(frame)

    async def send_batch(self, first: int, last: int, entries: list[BatchEntry]) -> None:
        body = encode_batch_body(BatchBody(FAKE, first, last, tuple(entries)))
        await self.send(Batch(body, self.identity.sign(body)))

    async def read(self) -> None:
        while True:
            await self.reading.wait()
            frame = await self.transport.recv()
            if frame[0] == 12:  # a fragment of amsterdam's inventory: not needed here
                continue
            message = decode_link_message(frame)
            if isinstance(message, Refused):
                self.refused.append(message)
            elif isinstance(message, Ack):
                self.acks.append(message.last_seq)
            self.changed.set()

    async def wait_for_ack(self, seq: int) -> None:
        async with asyncio.timeout(30):
            while seq not in self.acks:
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def fake_link(site: FederatedSite, identity: SiteIdentity) -> AsyncIterator[FakeSite]:
    amsterdam = Peer(A, (site.urls[0],), PublicKey.from_text(site.public_key))
    async with connect(site.urls[0], max_size=None) as conn:
        linked = await dial_handshake(DialedTransport(conn), identity, amsterdam, FAKE_FRAME)
        fake = FakeSite(linked.transport, linked.max_frame, identity)
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(fake.read())
            try:
                yield fake
            finally:
                reader.cancel()


async def _fetch(site: FederatedSite, sql: str, *args: object) -> object:
    connection = await asyncpg.connect(site.database_url)
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


async def test_a_lying_peer_is_refused_bounded_logged_and_counted(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    fake_identity = create_identity(FAKE, tmp_path / "aardvark.pem")
    extra = {FAKE: fake_identity.public_key.to_text()}
    env = {"SAMEN_LINK_SEND_BUDGET": str(4 * MIB), "SAMEN_LINK_PRESENCE_CLIENTS": "50"}
    async with Federation(tmp_path, pg_cluster, {A: 1}, {"eng": [A, FAKE]}, extra, env) as fed:
        site = fed[A]
        url = site.nodes[0].hocuspocus_url
        async with (
            SyncClient(url, DOC, protocol="hocuspocus") as ann,
            SyncClient(url, "eng/big", protocol="hocuspocus") as big,
        ):
            await ann.wait_synced()
            await big.wait_synced()
            big.doc.get("t", type=pycrdt.Text).insert(0, "b" * MIB)  # for the WANT flood
            text = ann.doc.get("t", type=pycrdt.Text)
            text += "<u0>"
            ann.set_awareness({"user": {"name": "Ann"}})
            await ann.wait_acknowledged(30)
            await big.wait_acknowledged(30)
            victim = ann.doc.client_id

            async with fake_link(site, fake_identity) as fake:
                entries = [
                    BatchEntry(DOC, "mallory@aardvark", bad_parent_update(4242, victim)),
                    BatchEntry(DOC, "mallory@aardvark", squatting_update(victim, len("<u0>"))),
                    BatchEntry(DOC, "mallory@aardvark", b"\x01" * (50 * MIB)),
                    BatchEntry("eng/nul\x00name", "mallory@aardvark", honest_update("nul")),
                    BatchEntry("eng/" + "x" * 5000, "mallory@aardvark", honest_update("long")),
                    BatchEntry(DOC, "mal\nlory@aardvark", honest_update("author")),
                    BatchEntry(DOC, "ann@amsterdam", honest_update("as ann")),
                    BatchEntry(DOC, "mallory@aardvark", honest_update("<peer>")),  # the one to keep
                ]
                await fake.send_batch(1, 1, entries)
                await fake.wait_for_ack(1)  # acknowledged: the refused ones are never resent
                assert len(fake.refused) == 7

                # Presence: a flood of fake clients, and a new state for ann's own id.
                for start in range(0, 500, 25):
                    ghosts = range(10_000 + start, 10_025 + start)
                    flood = [AwarenessEntry(ghost, 1, '{"user":{"name":"ghost"}}') for ghost in ghosts]
                    await fake.send(Presence(DOC, encode_awareness_update(flood)))
                evil = AwarenessEntry(victim, 1000, '{"user":{"name":"Mallory"}}')
                await fake.send(Presence(DOC, encode_awareness_update([evil])))
                await ann.wait_for(lambda: len(ann.remote_states()) > 0, 30)

                # Ann keeps typing: every edit is stored and survives.
                for i in range(1, 5):
                    text += f"<u{i}>"
                await ann.wait_acknowledged(30)

                # WANT flood without reading: answers stop once 4 MiB wait unread.
                fake.reading.clear()
                for _ in range(300):
                    await fake.send(Want("eng/big", b"\x00"))

                async def busy() -> bool:
                    return await site.link_metric("samen_link_wants_refused_busy_total", FAKE) >= 1

                await eventually(busy, 30, "amsterdam refused the WANT flood as busy")

                async def presence_dropped() -> bool:
                    return await site.link_metric("samen_link_presence_dropped_total", FAKE) >= 10

                await eventually(presence_dropped, 30, "presence over the per-peer limit dropped")
                assert len(ann.remote_states()) <= 50
                own = json.loads(ann.awareness.states[victim])
                assert own == {"user": {"name": "Ann"}}  # the peer could not rename ann
                # Invalid: the update that does not integrate. The squatting struct is valid
                # but refused by policy (another connection's client id): counted as refused.
                assert await site.link_metric("samen_link_invalid_updates_total", FAKE) == 1
                assert await site.link_metric("samen_link_refused_total", FAKE) >= 7
                assert await site.link_metric("samen_link_updates_received_total", FAKE) == 1
            expected = "<u0><u1><u2><u3><u4>"
            await ann.wait_for(lambda: "<peer>" in text_of(ann), 30)
            assert text_of(ann).replace("<peer>", "") == expected

        rows = await _fetch(site, "SELECT count(*) FROM updates WHERE origin = $1", FAKE)
        assert rows == 1  # only the honest update
        names = await _fetch(
            site, "SELECT count(DISTINCT doc) FROM updates WHERE doc NOT IN ($1, $2)", DOC, "eng/big"
        )
        assert names == 0

        log = site.nodes[0].log_text()
        for expected_line in (
            "update refused: parent is not a shared type",
            "client id",
            "above the 16777216 accepted",
            "control characters",
            "longer than 1024 bytes",
            "a peer site cannot write as a user of this site",
        ):
            assert expected_line in log, expected_line
        assert "\x00" not in log and "x" * 200 not in log
        assert max(len(line) for line in log.splitlines()) < 2000

        # A row an older release stored without integrating it: quarantined at the next load.
        connection = await asyncpg.connect(site.database_url)
        try:
            await connection.execute(
                "INSERT INTO updates (doc, data, origin, author) VALUES ($1, $2, $3, $4)",
                DOC, bad_parent_update(4343, victim), FAKE, "mallory@aardvark",
            )  # fmt: skip
        finally:
            await connection.close()
        await site.nodes[0].restart()
        async with SyncClient(url, DOC, protocol="hocuspocus") as again:
            await again.wait_for(lambda: "<u4>" in text_of(again), 30)
            assert text_of(again).replace("<peer>", "") == expected
        assert await site.metric("samen_quarantined_updates_total") == 1
        assert await _fetch(site, "SELECT count(*) FROM quarantined_updates WHERE doc = $1", DOC) == 1
        assert re.search(
            r"document 'eng/page': stored update \d+ of \d+ .* quarantined", site.nodes[0].log_text()
        )


async def test_a_peer_that_never_acknowledges_makes_the_link_stuck_loudly(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    fake_identity = create_identity(FAKE, tmp_path / "aardvark.pem")
    extra = {FAKE: fake_identity.public_key.to_text()}
    env = {"SAMEN_LINK_STUCK_AFTER": "1"}
    async with Federation(tmp_path, pg_cluster, {A: 1}, {"eng": [A, FAKE]}, extra, env) as fed:
        site = fed[A]
        async with fake_link(site, fake_identity):  # reads everything, acknowledges nothing
            async with SyncClient(site.nodes[0].hocuspocus_url, DOC, protocol="hocuspocus") as ann:
                await ann.wait_synced()
                ann.doc.get("t", type=pycrdt.Text).insert(0, "never acknowledged")
                await ann.wait_acknowledged(30)

            async def stuck() -> bool:
                return await site.link_metric("samen_link_stuck", FAKE) == 1

            await eventually(stuck, 30, "the link counts as stuck")
            assert await site.link_metric("samen_link_stalls_total", FAKE) == 1
            async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
                response = await http.get(f"{site.nodes[0].http_url}/readyz")
            assert response.status_code == 503
            assert any(f"site link to {FAKE}: stuck" in p for p in response.json()["problems"])
            assert re.search(
                r"WARNING .*link to aardvark is stuck: \d+ rows behind", site.nodes[0].log_text()
            )


async def test_a_stranger_cannot_flood_the_log_or_hold_the_node(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    async with Federation(tmp_path, pg_cluster, {A: 1}, {"eng": [A]}) as fed:
        site = fed[A]
        url = site.urls[0]
        # A 16 MiB HELLO: closed (1009) on its frame header, before the node reads the
        # payload: a site link is held to small frames until its handshake is done.
        async with connect(url, max_size=None) as conn:
            junk = "\x1b[2J\n" * (16 * MIB // 5)
            with contextlib.suppress(ConnectionClosed):  # the close may cut the send short
                await conn.send(encode_link_message(Hello(LINK_VERSION, junk, A, b"\x00" * 32)))
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    await conn.recv()
        assert conn.close_code == 1009
        # A HELLO within the frame limit but too large for a handshake message, of control
        # characters: refused (4401), one short escaped line in the log.
        async with connect(url, max_size=None) as conn:
            junk = "\x1b[2J\n" * (PRE_AUTH_MAX_FRAME // 10)
            await conn.send(encode_link_message(Hello(LINK_VERSION, junk, A, b"\x00" * 32)))
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    await conn.recv()
        assert conn.close_code == 4401
        # What strangers may make the node hold is bounded, and the node says how much.
        bound = await _unlabelled(site, "samen_link_handshake_max_bytes")
        assert bound == MAX_HANDSHAKES * PRE_AUTH_MAX_FRAME
        # Dropping in the middle of the handshake.
        async with connect(url) as conn:
            await conn.send(encode_link_message(Hello(LINK_VERSION, FAKE, A, b"\x00" * 32)))
        # 500 half-open handshakes: a few are held (each for at most the handshake timeout),
        # the rest are turned away at once; /healthz answers meanwhile.
        held: list[ClientConnection] = []
        turned_away = 0
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            for _ in range(500):
                try:
                    held.append(await connect(url, open_timeout=10))
                except InvalidStatus:
                    turned_away += 1
            assert (await http.get(f"{site.nodes[0].http_url}/healthz")).status_code == 200
            for conn in held:
                await conn.close()
        assert len(held) <= 40 and turned_away >= 460

        async def counted() -> bool:
            busy = await _labelled(site, "samen_link_handshake_failures_total", "busy")
            refused = await _labelled(site, "samen_link_handshake_failures_total", "refused")
            return busy >= 460 and refused >= 2  # the big HELLO and the unknown site

        await eventually(counted, 30, "handshake failures counted")
        log = site.nodes[0].log_text()
        assert "Traceback" not in log
        assert max(len(line) for line in log.splitlines()) < 1000
        assert "\x1b" not in log
        assert "handshake message of" in log and "is too large" in log


async def _unlabelled(site: FederatedSite, name: str) -> float:
    return sum(metric_value(text, name) for text in await site.metrics())


async def _labelled(site: FederatedSite, name: str, reason: str) -> float:
    return sum(metric_value(text, name, f'{{reason="{reason}"}}') for text in await site.metrics())
