"""Channel security of the site link, between two real sites.

A WebSocket relay sits on the path from amsterdam (which dials) to berlin: it reads every
frame with the project's codecs (the channel is authenticated, not encrypted: a sealed
frame is the message and its MAC). Passing traffic through, the link works. Dropping a
batch and forging the ACK for it, it cannot make amsterdam's backlog read 0 for rows
berlin never stored: the forged ACK fails its MAC check, the link ends loudly, and once
the relay behaves the rows are sent again and both sites converge.

Over wss://, with a CA made here and berlin serving TLS itself (SAMEN_TLS_CERT/KEY), the
link works end to end; a berlin certificate from another CA is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pycrdt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from clients.sync_client import SyncClient
from protocol.errors import ProtocolError
from protocol.link_channel import MAC_BYTES
from protocol.sitelink import Ack, Batch, decode_batch_body, decode_link_message, encode_link_message

from ..pg_cluster import PgCluster
from .federation import FederatedSite, Federation, SiteTls
from .site import eventually

pytestmark = pytest.mark.integration

A, B = "amsterdam", "berlin"  # amsterdam sorts first: it dials berlin


class LinkRelay:
    """What a machine on the path between two sites can do: pass frames through, or drop
    each batch from the log and answer its sender with a forged ACK (it has no key, so any
    32 bytes stand for the MAC)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.url = ""
        self.tampering = False
        self.dropped: list[int] = []  # the last seq of each batch it dropped
        self.changed = asyncio.Event()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[LinkRelay]:
        async with serve(self._relay, "127.0.0.1", 0, max_size=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/federation"
            yield self

    async def _relay(self, downstream: ServerConnection) -> None:
        try:
            upstream = await connect(self.upstream, max_size=None)
        except OSError:
            return
        async with upstream, asyncio.TaskGroup() as tasks:
            forward = tasks.create_task(self._pump(downstream, upstream, tamper=True))
            back = tasks.create_task(self._pump(upstream, downstream, tamper=False))
            await asyncio.wait([forward, back], return_when=asyncio.FIRST_COMPLETED)
            forward.cancel()
            back.cancel()

    async def _pump(
        self,
        source: ServerConnection | ClientConnection,
        sink: ServerConnection | ClientConnection,
        *,
        tamper: bool,
    ) -> None:
        try:
            async for frame in source:
                assert isinstance(frame, bytes)
                if tamper and self.tampering and await self._dropped(frame, source):
                    continue
                await sink.send(frame)
        except ConnectionClosed:
            pass
        finally:
            # Pass the close on, with its code, as a transparent relay would (the codes that
            # only say "no close frame" cannot be sent).
            code = source.close_code
            if code is None or code in (1005, 1006, 1015):
                code = 1000
            with contextlib.suppress(ConnectionClosed):
                await sink.close(code, source.close_reason or "")

    async def _dropped(self, frame: bytes, sender: ServerConnection | ClientConnection) -> bool:
        try:
            message = decode_link_message(frame[:-MAC_BYTES])  # sealed, but readable
        except ProtocolError:
            return False  # a handshake frame, or a fragment
        if not isinstance(message, Batch):
            return False
        last = decode_batch_body(message.body).last_seq
        if last == 0:
            return False  # an inventory or an answer: moves no cursor
        self.dropped.append(last)
        self.changed.set()
        await sender.send(encode_link_message(Ack(last)) + os.urandom(MAC_BYTES))
        return True


async def stored_text(site: FederatedSite, document: str) -> str:
    """The document as berlin's store holds it (every row merged)."""
    connection = await asyncpg.connect(site.database_url)
    try:
        rows = await connection.fetch("SELECT data FROM updates WHERE doc = $1 ORDER BY seq", document)
        snapshot = await connection.fetchval("SELECT data FROM snapshots WHERE doc = $1", document)
    finally:
        await connection.close()
    doc: pycrdt.Doc[pycrdt.Text] = pycrdt.Doc()
    for data in ([snapshot] if snapshot else []) + [row["data"] for row in rows]:
        doc.apply_update(data)
    return str(doc.get("t", type=pycrdt.Text))


async def write(site: FederatedSite, document: str, text: str) -> None:
    async with SyncClient(site.nodes[0].hocuspocus_url, document, protocol="hocuspocus") as client:
        await client.wait_synced()
        client.doc.get("t", type=pycrdt.Text).insert(0, text)
        await client.wait_acknowledged(30)


async def test_a_relay_can_neither_forge_an_ack_nor_drop_a_batch_unnoticed(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    fed = Federation(tmp_path, pg_cluster, {A: 1, B: 1}, {"eng": [A, B]})
    relay = LinkRelay(fed[B].urls[0])
    async with relay.running():
        fed[B].dialed_at = [relay.url]  # amsterdam's peers file names the relay for berlin
        async with fed:
            # (a) Passing traffic through, the link works.
            await fed[A].wait_link(B)
            await write(fed[A], "eng/one", "through the relay")

            async def berlin_has(document: str, text: str) -> bool:
                return await stored_text(fed[B], document) == text

            await eventually(lambda: berlin_has("eng/one", "through the relay"), 30, "berlin has eng/one")
            await fed[A].wait_acknowledged_by(B)
            assert await fed[A].link_metric("samen_link_integrity_failures_total", B) == 0

            # (b) Dropping each batch and forging its ACK: amsterdam's backlog never reads 0
            # while berlin lacks the rows; every link that tries ends loudly.
            relay.tampering = True
            await write(fed[A], "eng/two", "dropped on the way")

            async def two_links_failed() -> bool:
                # Read the backlog before berlin's store: an ACK comes after the rows are
                # durable, so a backlog of 0 read first would mean berlin holds them.
                backlog = await fed[A].link_metric("samen_link_backlog_rows", B)
                assert await stored_text(fed[B], "eng/two") == ""  # berlin never got them
                assert backlog >= 1, "a forged ACK moved amsterdam's cursor"
                return (
                    len(relay.dropped) >= 2
                    and await fed[A].link_metric("samen_link_integrity_failures_total", B) >= 2
                )

            await eventually(two_links_failed, 60, "two links ended by the forged ACKs")
            log = fed[A].nodes[0].log_text()
            assert "ERROR server.federation.link: link to berlin failed its integrity check: frame" in log
            assert "does not verify" in log

            # Once the relay behaves, the rows are sent again and both sites converge.
            relay.tampering = False
            await eventually(lambda: berlin_has("eng/two", "dropped on the way"), 60, "berlin has eng/two")
            await fed[A].wait_acknowledged_by(B, timeout=60)
            assert await stored_text(fed[B], "eng/one") == "through the relay"
            assert await fed[B].link_metric("samen_link_rejections_total", A) == 0


# -- wss:// ----------------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def make_server_cert(
    directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (an IP address SAN: what the dialer checks)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "berlin-cert.pem", directory / "berlin-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


async def test_over_wss_the_link_works_and_a_certificate_of_another_ca_is_refused(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    ca_key, ca_cert, ca_file = make_ca(tmp_path, "samen-test-ca")
    cert, key = make_server_cert(tmp_path, ca_key, ca_cert)
    _, _, other_ca = make_ca(tmp_path, "another-ca")
    tls = {B: SiteTls(cert, key, ca_file)}
    async with Federation(tmp_path, pg_cluster, {A: 1, B: 1}, {"eng": [A, B]}, tls=tls) as fed:
        assert fed[B].urls[0].startswith("wss://127.0.0.1:")
        # Amsterdam, the dialer, with the default: ws:// refused (its peers file names
        # berlin by wss:// only). Berlin's names amsterdam by ws://, allowed on the loopback
        # by the harness: berlin never dials it.
        node = fed[A].nodes[0]
        node.env["SAMEN_LINK_ALLOW_INSECURE"] = "false"
        await node.restart()
        await fed[A].wait_link(B)
        await write(fed[A], "eng/secret", "over TLS")
        await fed[A].wait_acknowledged_by(B)
        assert await stored_text(fed[B], "eng/secret") == "over TLS"
        assert await fed[A].link_metric("samen_link_certificate_failures_total", B) == 0

        # Amsterdam trusting another CA: berlin's certificate does not verify, the dial is
        # refused loudly and nothing crosses.
        node.env["SAMEN_LINK_CA_FILE"] = str(other_ca)
        await node.restart()

        async def refused() -> bool:
            return await fed[A].link_metric("samen_link_certificate_failures_total", B) >= 1

        await eventually(refused, 30, "amsterdam refusing berlin's certificate")
        assert await fed[A].link_metric("samen_link_up", B) == 0
        await write(fed[A], "eng/held", "not to a stranger")

        async def behind() -> bool:  # the backlog gauge is refreshed every two seconds
            return await fed[A].link_metric("samen_link_backlog_rows", B) >= 1

        await eventually(behind, 30, "amsterdam's backlog toward berlin showing the row")
        assert await stored_text(fed[B], "eng/held") == ""
        log = node.log_text()
        assert "ERROR server.federation.service: link to berlin at wss://127.0.0.1:" in log
        assert "its TLS certificate does not verify: unable to get local issuer certificate" in log
