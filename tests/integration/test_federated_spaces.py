"""Federated spaces between real sites (each its own PostgreSQL and Redis, SAMEN_AUTH=required)
with the real npm providers: amsterdam's space `eng` is shared with berlin, whose person
alice@berlin, a member of `eng`, signs in at berlin and edits there (acceptance 3); removing
members at amsterdam closes their sessions on both sites within a second (alice at berlin
over y-websocket, anton at amsterdam over Hocuspocus), lowering vic@berlin to viewer makes
his Hocuspocus session at berlin read-only within that second, and nothing any of them tries
afterwards is in a document or a store of either site (acceptance 2, across sites). And a
lying peer: a fake site with a real key, speaking the link protocol, gets none of its forged
updates and memberships in (acceptance 3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pycrdt
import pytest
from websockets.asyncio.client import connect

from protocol.sitelink import (
    Ack,
    Batch,
    BatchBody,
    BatchEntry,
    Membership,
    Refused,
    decode_link_message,
    encode_batch_body,
    encode_link_message,
)
from protocol.space_membership import MembershipBody, decode_membership_body, encode_membership_body
from server.domain.space_federation import SpaceFederation
from server.domain.space_service import OPERATOR
from server.domain.spaces import JoinPolicy, SpaceRole
from server.federation.handshake import dial_handshake
from server.federation.identity import PublicKey, create_identity
from server.federation.peers import Peer
from server.federation.transports import DialedTransport
from server.store.postgres import PostgresStore

from ..pg_cluster import PgCluster
from .federation import FederatedSite, Federation
from .intranet import intranet
from .site import eventually, metric_value
from .yjs_driver import Client, YjsDriver, doc_state, doc_text, text_insert

pytestmark = pytest.mark.integration

A, B = "amsterdam", "berlin"
DOC = "eng/roadmap"
WITHIN = 1.0  # seconds: the bound for a revocation to take effect on every site
AUTH = {"SAMEN_AUTH": "required"}
REVOKED = ("alice", "anton", "vic")


@pytest.fixture
async def driver() -> AsyncIterator[YjsDriver]:
    async with YjsDriver() as d:
        yield d


async def rows(site: FederatedSite, sql: str) -> list[dict[str, object]]:
    connection = await asyncpg.connect(site.database_url)
    try:
        return [dict(r) for r in await connection.fetch(sql)]
    finally:
        await connection.close()


async def stored_text(site: FederatedSite, document: str) -> str:
    store = PostgresStore(site.database_url)
    await store.open()
    try:
        doc = pycrdt.Doc()
        for update in (await store.load(document)).all_updates():
            doc.apply_update(update)
    finally:
        await store.close()
    return str(doc.get("t", type=pycrdt.Text))


async def share_eng(fed: Federation) -> dict[str, str]:
    """amsterdam's `eng` shared with berlin: ann, anton (amsterdam) and alice, wendy (berlin)
    editors. Written while the sites run, as operators do; returns every person's token."""
    tokens: dict[str, str] = {}
    async with intranet(fed[B].database_url, site=B) as berlin:
        await berlin.add_people({"alice": "member", "wendy": "member", "vic": "member"})
        # berlin's operator: eng is amsterdam's, take its membership from there.
        await berlin.spaces.create(OPERATOR, "eng", "Engineering at amsterdam", home=A)
        tokens |= berlin.tokens
    async with intranet(fed[A].database_url, site=A) as amsterdam:
        await amsterdam.add_people({"root": "admin", "ann": "member", "anton": "member"})
        await amsterdam.spaces.create(OPERATOR, "eng", "Engineering", join_policy=JoinPolicy.INVITE)
        await SpaceFederation(amsterdam.spaces, A).share(OPERATOR, "eng", B)
        for person in ("ann", "anton", "alice@berlin", "wendy@berlin", "vic@berlin"):
            await amsterdam.spaces.add_member(OPERATOR, "eng", person, SpaceRole.EDITOR)
        tokens |= amsterdam.tokens

    async def berlin_has_the_members() -> bool:
        members = await rows(fed[B], "SELECT person FROM space_members WHERE space = 'eng'")
        return {m["person"] for m in members} == {
            "ann@amsterdam",
            "anton@amsterdam",
            "alice@berlin",
            "wendy@berlin",
            "vic@berlin",
        }

    await eventually(berlin_has_the_members, 30, "eng's members at berlin")
    return tokens


async def test_a_member_of_another_site_edits_and_is_removed_on_both_sites(
    tmp_path: Path, pg_cluster: PgCluster, driver: YjsDriver
) -> None:
    async with Federation(tmp_path, pg_cluster, {A: 1, B: 1}, {}, env=AUTH) as fed:
        await fed[A].wait_link(B)
        tokens = await share_eng(fed)
        amsterdam, berlin = fed[A].nodes[0], fed[B].nodes[0]
        # The removed pair: alice at berlin over y-websocket, anton at amsterdam over Hocuspocus.
        alice = await driver.connect(
            "alice", "y-websocket", berlin.ws_url, [DOC], params={"token": tokens["alice"]}
        )
        anton = await driver.connect(
            "anton", "hocuspocus-v4", amsterdam.hocuspocus_url, [DOC], token=tokens["anton"]
        )
        ann = await driver.connect(
            "ann", "y-websocket", amsterdam.ws_url, [DOC], params={"token": tokens["ann"]}
        )
        wendy = await driver.connect(
            "wendy", "hocuspocus-v4", berlin.hocuspocus_url, [DOC], token=tokens["wendy"]
        )
        # Lowered to viewer at the home: read-only at berlin.
        vic = await driver.connect("vic", "hocuspocus-v4", berlin.hocuspocus_url, [DOC], token=tokens["vic"])
        watchers = [ann, wendy]
        for client in (alice, anton, vic, *watchers):
            await client.wait_synced()

        # alice@berlin edits eng at berlin; amsterdam takes it (she is an editor there).
        await alice.edit(DOC, [text_insert("<alice-before>")])
        await anton.edit(DOC, [text_insert("<anton-before>")])
        for watcher in watchers:
            await watcher.wait_for(
                lambda s: "<alice-before>" in doc_text(s, DOC) and "<anton-before>" in doc_text(s, DOC),
                what="both sites' edits",
            )

        # Removed (and vic lowered) at the home, over REST: within a second all three are out
        # or read-only, on their own sites.
        revoked_at_berlin = await fed[B].metric("samen_sessions_revoked_total")
        async with httpx.AsyncClient(base_url=f"{amsterdam.http_url}/api/v1", trust_env=False) as http:
            admin = {"authorization": f"Bearer {tokens['root']}"}
            lowered = await http.put("/spaces/eng/members/vic@berlin", json={"role": "viewer"}, headers=admin)
            assert lowered.status_code == 200, lowered.text
            for person in ("alice@berlin", "anton"):
                response = await http.delete(f"/spaces/eng/members/{person}", headers=admin)
                assert response.status_code == 204, response.text

        async def closed_and_downgraded_at_berlin() -> bool:  # alice closed, vic downgraded
            return await fed[B].metric("samen_sessions_revoked_total") >= revoked_at_berlin + 2

        await eventually(closed_and_downgraded_at_berlin, WITHIN, "alice and vic revoked at berlin")
        await alice.wait_for(
            lambda s: doc_state(s, DOC)["closeCode"] == 4403, timeout=WITHIN, what="4403 at berlin"
        )
        await anton.wait_for(
            lambda s: doc_state(s, DOC)["authFailed"] == "access to this document was revoked",
            timeout=WITHIN,
            what="PermissionDenied at amsterdam",
        )
        await alice.edit(DOC, [text_insert("<alice-after>")])
        await anton.edit(DOC, [text_insert("<anton-after>")])
        await vic.edit(DOC, [text_insert("<vic-after>")])
        await vic.wait_for(lambda s: doc_state(s, DOC)["syncRefused"] >= 1, what="SyncStatus false")
        await nothing_afterwards_anywhere(fed, watchers)


async def nothing_afterwards_anywhere(fed: Federation, watchers: list[Client]) -> None:
    """Each watcher types once more and waits for the other's edit, across the link: by then
    anything the removed pair sent would have arrived too. It must be nowhere, nor stored."""
    for watcher in watchers:
        await watcher.edit(DOC, [text_insert(f"<{watcher.cid}-after>")])
    marks = [f"<{w.cid}-after>" for w in watchers]
    for watcher in watchers:
        await watcher.wait_for(
            lambda s: all(m in doc_text(s, DOC) for m in marks), what="every watcher's edit"
        )
        text = doc_text(watcher.state, DOC)
        assert not any(f"<{who}-after>" in text for who in REVOKED), (watcher.cid, text)
    await fed[A].wait_acknowledged_by(B)
    await fed[B].wait_acknowledged_by(A)
    for site in (fed[A], fed[B]):
        for node in site.nodes:
            await node.stop()
        stored = await stored_text(site, DOC)
        assert all(m in stored for m in ["<alice-before>", "<anton-before>", *marks]), (site.site_id, stored)
        assert not any(f"<{who}-after>" in stored for who in REVOKED), (site.site_id, stored)


# -- the lying peer -------------------------------------------------------------------------

# "aardvark" sorts before amsterdam, so it dials: the test plays it, with a real site key.
FAKE = "aardvark"
LINK_FRAME = 1 << 20


def update_of(text: str) -> bytes:
    doc = pycrdt.Doc()
    doc.get("t", type=pycrdt.Text).insert(0, text)
    return doc.get_update()


async def test_a_lying_peer_gets_nothing_in(tmp_path: Path, pg_cluster: PgCluster, driver: YjsDriver) -> None:
    fake = create_identity(FAKE, tmp_path / "aardvark.pem")
    extra = {FAKE: fake.public_key.to_text()}
    async with Federation(tmp_path, pg_cluster, {A: 1}, {}, extra_peers=extra, env=AUTH) as fed:
        site = fed[A]
        async with intranet(site.database_url, site=A) as amsterdam:
            await amsterdam.add_people({"ann": "member"})
            await amsterdam.spaces.create(OPERATOR, "eng", "Engineering", join_policy=JoinPolicy.INVITE)
            await SpaceFederation(amsterdam.spaces, A).share(OPERATOR, "eng", FAKE)
            await amsterdam.spaces.add_member(OPERATOR, "eng", "ann", SpaceRole.EDITOR)
            await amsterdam.spaces.add_member(OPERATOR, "eng", "ed@aardvark", SpaceRole.EDITOR)
            await amsterdam.spaces.add_member(OPERATOR, "eng", "vi@aardvark", SpaceRole.VIEWER)
            token = amsterdam.tokens["ann"]
        # ann has one of the documents open: the hook runs for open rooms and closed ones.
        node = site.nodes[0]
        ann = await driver.connect("ann", "y-websocket", node.ws_url, ["eng/viewer"], params={"token": token})
        await ann.wait_synced()
        members_before = await rows(site, "SELECT * FROM space_members ORDER BY person")
        log_before = await rows(site, "SELECT * FROM space_member_log ORDER BY seq")
        home = Peer(A, tuple(site.urls), PublicKey.from_text(site.public_key))

        async def link_up() -> bool:
            return await site.metric("samen_federated_spaces") >= 1

        await eventually(link_up, 30, "amsterdam holding eng as federated")
        lies = {
            "eng/viewer": "vi@aardvark",  # a viewer of eng
            "eng/stranger": "nobody@aardvark",  # not a member
            # An author of another site (one of amsterdam's own is refused earlier, by the
            # link itself: test_link_hostile.py).
            "eng/claimed": "carol@berlin",
            "eng/merged": "",  # content without an author, from a site that is not the home
        }
        entries = [BatchEntry(doc, author, update_of(f"<{doc}>")) for doc, author in lies.items()]
        entries.append(BatchEntry("eng/honest", "ed@aardvark", update_of("<honest>")))  # the control
        body = encode_batch_body(BatchBody(FAKE, 1, 1, tuple(entries)))
        # Forged memberships: one for amsterdam's space (sent by a site that is not its home),
        # one claiming eng as aardvark's, one whose signature does not verify.
        mallory = (("mallory@aardvark", "admin"),)
        claims = MembershipBody(A, "eng", 99, "Owned", "", "open", "listed", False, "admin", (FAKE,), mallory)
        own = MembershipBody(FAKE, "eng", 99, "Owned", "", "open", "listed", False, "admin", (), mallory)

        async with connect(site.urls[0]) as conn:
            transport = DialedTransport(conn)
            sealed = (await dial_handshake(transport, fake, home, LINK_FRAME)).transport
            memberships: list[MembershipBody] = []
            # The batch goes once amsterdam holds eng with ed as an editor: it says so by
            # sending that membership (members added before it had read them would make the
            # control update look like a non-member's).
            async with asyncio.timeout(20):
                while not memberships or "ed@aardvark" not in dict(memberships[-1].members):
                    message = decode_link_message(await sealed.recv())
                    if isinstance(message, Membership):
                        assert home.public_key.verify(message.signature, message.body)
                        memberships.append(decode_membership_body(message.body))
            await sealed.send(encode_link_message(Batch(body, fake.sign(body))))
            for forged in (claims, own):
                signed = encode_membership_body(forged)
                await sealed.send(encode_link_message(Membership(signed, fake.sign(signed))))
            signed = encode_membership_body(own)
            await sealed.send(encode_link_message(Membership(signed, b"\x00" * 64)))
            refused: set[str] = set()
            acked = False
            async with asyncio.timeout(20):
                while not (acked and refused >= lies.keys() and memberships):
                    message = decode_link_message(await sealed.recv())
                    if isinstance(message, Refused):
                        refused.add(message.document)
                    elif isinstance(message, Ack):
                        acked = True
                    elif isinstance(message, Membership):
                        # What the home sends is signed by it.
                        assert home.public_key.verify(message.signature, message.body)
                        memberships.append(decode_membership_body(message.body))
            assert refused == lies.keys()
            assert dict(memberships[-1].members)["vi@aardvark"] == "viewer"

            async def counted() -> bool:
                text = "".join(await site.metrics())
                updates = {
                    r: metric_value(text, "samen_site_updates_refused_total", f'{{reason="{r}"}}')
                    for r in ("not_writer", "foreign_author", "no_author")
                }
                forged = {
                    r: metric_value(text, "samen_site_memberships_refused_total", f'{{reason="{r}"}}')
                    for r in ("not_home", "not_expected", "bad_signature")
                }
                return updates == {"not_writer": 2, "foreign_author": 1, "no_author": 1} and all(
                    v == 1 for v in forged.values()
                )

            await eventually(counted, 10, "the refusals counted at /metrics")

        stored = {
            r["doc"] for r in await rows(site, "SELECT doc FROM updates UNION SELECT doc FROM snapshots")
        }
        assert "eng/honest" in stored
        assert not stored & lies.keys(), stored
        assert doc_text(ann.state, "eng/viewer") == ""
        assert await rows(site, "SELECT * FROM space_members ORDER BY person") == members_before
        assert await rows(site, "SELECT * FROM space_member_log ORDER BY seq") == log_before
        assert await rows(site, "SELECT * FROM space_sites") == [{"space": "eng", "site": FAKE}]
        space = await rows(site, "SELECT title, home, join_policy FROM spaces")
        assert space == [{"title": "Engineering", "home": "", "join_policy": "invite"}]
        log = node.log_text()
        assert "refused an update of 'eng/viewer' from site aardvark by 'vi@aardvark': not_writer" in log
        assert "refused a membership of 'eng' from site aardvark" in log
