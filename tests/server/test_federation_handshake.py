"""Site identities, the peers file, the replication scope and the link handshake (in memory)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from protocol.link_channel import MAC_BYTES
from protocol.sitelink import NONCE_BYTES, Ack, Challenge, Hello, decode_link_message, encode_link_message
from server.close_codes import CloseCode
from server.errors import ConfigError
from server.federation.channel_keys import EphemeralKey, derive_channel_keys
from server.federation.handshake import (
    Authenticated,
    LinkClosed,
    LinkRefused,
    LinkTampered,
    SealedTransport,
    accept_handshake,
    dial_handshake,
)
from server.federation.identity import SiteIdentity, create_identity, load_identity
from server.federation.link_tls import client_context, warn_if_insecure
from server.federation.peers import Peer, ReplicationScope, load_peers
from server.settings import Settings


class MemoryTransport:
    """One end of an in-memory link."""

    def __init__(self, inbox: asyncio.Queue[bytes | None], outbox: asyncio.Queue[bytes | None]) -> None:
        self._inbox, self._outbox = inbox, outbox
        self.closed: tuple[int, str] | None = None

    async def send(self, data: bytes) -> None:
        await self._outbox.put(data)

    async def recv(self) -> bytes:
        data = await self._inbox.get()
        if data is None:
            raise LinkClosed("closed")
        return data

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        await self._outbox.put(None)


def pipe() -> tuple[MemoryTransport, MemoryTransport]:
    a: asyncio.Queue[bytes | None] = asyncio.Queue()
    b: asyncio.Queue[bytes | None] = asyncio.Queue()
    return MemoryTransport(a, b), MemoryTransport(b, a)


@pytest.fixture
def sites(tmp_path: Path) -> dict[str, SiteIdentity]:
    return {name: create_identity(name, tmp_path / f"{name}.pem") for name in ("alpha", "beta", "mallory")}


def peer_of(identity: SiteIdentity, key_of: SiteIdentity | None = None) -> Peer:
    return Peer(identity.site_id, ("ws://127.0.0.1:1/federation",), (key_of or identity).public_key)


async def handshake(
    dialer: SiteIdentity, acceptor: SiteIdentity, dialer_knows: Peer, acceptor_knows: dict[str, Peer]
) -> tuple[object, object]:
    dial_end, accept_end = pipe()

    async def dial() -> object:
        try:
            linked = await dial_handshake(dial_end, dialer, dialer_knows, 1 << 20)
            assert linked.max_frame == 2 << 20  # what the acceptor said it takes
            return "ok"
        except (LinkRefused, LinkClosed) as exc:
            await dial_end.close(4401, str(exc))
            return exc

    async def accept() -> object:
        try:
            linked = await accept_handshake(accept_end, acceptor, acceptor_knows, 2 << 20)
            assert linked.max_frame == 1 << 20
            return linked.peer
        except (LinkRefused, LinkClosed) as exc:
            await accept_end.close(getattr(exc, "code", 1002), str(exc))
            return exc

    return tuple(await asyncio.gather(dial(), accept()))  # type: ignore[return-value]


async def test_both_sides_prove_who_they_are(sites: dict[str, SiteIdentity]) -> None:
    alpha, beta = sites["alpha"], sites["beta"]
    dialed, accepted = await handshake(alpha, beta, peer_of(beta), {"alpha": peer_of(alpha)})
    assert dialed == "ok"
    assert isinstance(accepted, Peer) and accepted.site_id == "alpha"


async def test_dialer_with_the_wrong_key_is_refused(sites: dict[str, SiteIdentity]) -> None:
    alpha, beta, mallory = sites["alpha"], sites["beta"], sites["mallory"]
    impostor = SiteIdentity("alpha", mallory.private_key)  # claims to be alpha
    _, accepted = await handshake(impostor, beta, peer_of(beta), {"alpha": peer_of(alpha)})
    assert isinstance(accepted, LinkRefused) and accepted.code == 4401
    assert "wrong key" in accepted.reason


async def test_acceptor_with_the_wrong_key_is_refused(sites: dict[str, SiteIdentity]) -> None:
    alpha, beta, mallory = sites["alpha"], sites["beta"], sites["mallory"]
    impostor = SiteIdentity("beta", mallory.private_key)
    dialed, _ = await handshake(alpha, impostor, peer_of(beta), {"alpha": peer_of(alpha)})
    assert isinstance(dialed, LinkRefused) and "wrong key" in dialed.reason


async def test_unknown_site_is_refused(sites: dict[str, SiteIdentity]) -> None:
    _, accepted = await handshake(sites["mallory"], sites["beta"], peer_of(sites["beta"]), {})
    assert isinstance(accepted, LinkRefused) and accepted.code == 4403


def test_key_file_roundtrip_and_refusals(tmp_path: Path) -> None:
    identity = create_identity("lyon", tmp_path / "lyon.pem")
    assert (tmp_path / "lyon.pem").stat().st_mode & 0o777 == 0o600
    loaded = load_identity("lyon", tmp_path / "lyon.pem")
    assert loaded.public_key.to_text() == identity.public_key.to_text()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        create_identity("lyon", tmp_path / "lyon.pem")
    with pytest.raises(ConfigError, match="site id"):
        create_identity("Lyon!", tmp_path / "other.pem")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="PEM"):
        load_identity("lyon", tmp_path / "junk.pem")


def write_peers(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_peers_file(tmp_path: Path, sites: dict[str, SiteIdentity]) -> None:
    key = sites["beta"].public_key.to_text()
    path = write_peers(
        tmp_path / "peers.toml",
        f'[[peer]]\nid = "beta"\nurls = ["ws://127.0.0.1:9/federation"]\npublic_key = "{key}"\n'
        '[spaces]\nengineering = ["beta"]\nprivate = []\n',
    )
    config = load_peers(path, "alpha", allow_insecure="loopback")
    assert list(config.peers) == ["beta"]
    assert config.scope.shares("engineering/roadmap", "beta")
    assert not config.scope.shares("private/salaries", "beta")
    assert not config.scope.shares("roadmap", "beta")  # no space: never federated
    assert config.scope.peers_of("engineering/x") == {"beta"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[peer]]\nid = "beta"\n', "lacks"),
        ('[[peer]]\nid = "beta"\nurl = "ws://x/federation"\npublic_key = "nope"\n', "base64"),
        ('[[peer]]\nid = "alpha"\nurl = "ws://x/f"\npublic_key = "KEY"\n', "this site itself"),
        ('[[peer]]\nid = "beta"\nurl = "http://x/f"\npublic_key = "KEY"\n', "ws://"),
        ('[spaces]\nengineering = ["nobody"]\n', "unknown peers"),
        ("[[peer]\n", "TOML"),
    ],
)
def test_bad_peers_files_say_what_is_wrong(
    tmp_path: Path, sites: dict[str, SiteIdentity], text: str, message: str
) -> None:
    key = sites["beta"].public_key.to_text()
    path = write_peers(tmp_path / "peers.toml", text.replace("KEY", key))
    with pytest.raises(ConfigError, match=message):
        load_peers(path, "alpha")


@pytest.mark.parametrize(
    ("url", "allow_insecure", "refused"),
    [
        ("wss://samen.lyon.example/federation", "false", None),
        ("ws://samen.lyon.example/federation", "false", "site links are wss://"),
        ("ws://127.0.0.1:9/federation", "false", "site links are wss://"),
        ("ws://127.0.0.1:9/federation", "loopback", None),
        ("ws://[::1]:9/federation", "loopback", None),
        ("ws://localhost/federation", "loopback", None),
        ("ws://10.0.0.1/federation", "loopback", "not on the loopback"),
        ("ws://127.0.0.1.example/federation", "loopback", "not on the loopback"),
        ("ws://samen.lyon.example/federation", "true", None),
    ],
)
def test_peer_urls_are_wss_unless_insecure_links_are_allowed(
    tmp_path: Path, sites: dict[str, SiteIdentity], url: str, allow_insecure: str, refused: str | None
) -> None:
    key = sites["beta"].public_key.to_text()
    path = write_peers(
        tmp_path / "peers.toml", f'[[peer]]\nid = "beta"\nurls = ["{url}"]\npublic_key = "{key}"\n'
    )
    if refused is None:
        assert load_peers(path, "alpha", allow_insecure=allow_insecure).peers["beta"].urls == (url,)
    else:
        with pytest.raises(ConfigError, match=refused):
            load_peers(path, "alpha", allow_insecure=allow_insecure)


def test_insecure_links_are_warned_about_loudly(caplog: pytest.LogCaptureFixture) -> None:
    warn_if_insecure(["wss://a/federation"], "false")
    assert not caplog.records
    warn_if_insecure(["ws://127.0.0.1:9/federation", "wss://a/federation"], "loopback")
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "ws://127.0.0.1:9/federation" in record.getMessage()
    assert "Never in production" in record.getMessage()


def test_link_tls_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="false, loopback or true"):
        Settings.from_env({"SAMEN_LINK_ALLOW_INSECURE": "yes"})
    with pytest.raises(ConfigError, match="go together"):
        Settings.from_env({"SAMEN_TLS_CERT": "cert.pem"})
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="SAMEN_LINK_CA_FILE"):
        client_context(str(tmp_path / "junk.pem"))
    assert client_context("").verify_mode == ssl.CERT_REQUIRED  # the system CAs, verified


def test_scope_is_by_space_prefix() -> None:
    scope = ReplicationScope({"eng": frozenset({"b"})})
    assert scope.space_of("eng/a/b") == "eng"
    assert scope.space_of("/x") is None and scope.space_of("x") is None


async def test_a_peer_speaking_an_older_link_version_is_refused_by_name(
    sites: dict[str, SiteIdentity],
) -> None:
    alpha, beta = sites["alpha"], sites["beta"]
    dial_end, accept_end = pipe()
    # What a samen-link/2 site sends first (no ephemeral keys, no sealed channel): HELLO has
    # the same layout in every version, so it is told why, by name.
    await dial_end.send(encode_link_message(Hello("samen-link/2", "alpha", "beta", b"\x01" * NONCE_BYTES)))
    with pytest.raises(LinkRefused) as refused:
        await accept_handshake(accept_end, beta, {"alpha": peer_of(alpha)}, 1 << 20)
    assert refused.value.code == CloseCode.LINK_OUTDATED == 4426
    assert refused.value.reason == (
        "site link version 'samen-link/2' is not supported: this site speaks samen-link/3"
    )


async def both_ends(sites: dict[str, SiteIdentity]) -> tuple[Authenticated, Authenticated]:
    alpha, beta = sites["alpha"], sites["beta"]
    dial_end, accept_end = pipe()
    dialed, accepted = await asyncio.gather(
        dial_handshake(dial_end, alpha, peer_of(beta), 1 << 20),
        accept_handshake(accept_end, beta, {"alpha": peer_of(alpha)}, 1 << 20),
    )
    return dialed, accepted


async def test_after_the_handshake_both_directions_are_sealed(sites: dict[str, SiteIdentity]) -> None:
    dialed, accepted = await both_ends(sites)
    await dialed.transport.send(encode_link_message(Ack(5)))
    await accepted.transport.send(encode_link_message(Ack(7)))
    assert decode_link_message(await accepted.transport.recv()) == Ack(5)
    assert decode_link_message(await dialed.transport.recv()) == Ack(7)


async def test_a_frame_forged_or_dropped_after_the_handshake_ends_the_link(
    sites: dict[str, SiteIdentity],
) -> None:
    dialed, accepted = await both_ends(sites)
    raw_accept_end = accepted.transport._transport  # what a relay on the path sees and writes
    # A forged ACK (any 32 bytes as its MAC): the dialer's end refuses it.
    await raw_accept_end.send(encode_link_message(Ack(99)) + b"\x00" * MAC_BYTES)
    with pytest.raises(LinkTampered, match="frame 1 of this direction does not verify"):
        await dialed.transport.recv()
    # A dropped frame: the next genuine one does not verify either (its sequence number).
    await dialed.transport.send(encode_link_message(Ack(1)))
    raw_dial_end = dialed.transport._transport
    assert isinstance(raw_dial_end, MemoryTransport)
    await raw_accept_end._inbox.get()  # the relay swallows ACK 1  # type: ignore[attr-defined]
    await dialed.transport.send(encode_link_message(Ack(2)))
    with pytest.raises(LinkTampered, match="frame 0"):
        await accepted.transport.recv()


async def test_each_link_has_its_own_keys(sites: dict[str, SiteIdentity]) -> None:
    first, _ = await both_ends(sites)
    _, second = await both_ends(sites)
    # A frame recorded on one link (same two sites) does not verify on another: replaying
    # an old link's ACK into a new one fails.
    recorded = []

    class Recorder:
        async def send(self, data: bytes) -> None:
            recorded.append(data)

    sealed = SealedTransport(Recorder(), first.transport._sealer, first.transport._opener)  # type: ignore[arg-type]
    await sealed.send(encode_link_message(Ack(3)))
    await second.transport._transport._inbox.put(recorded[0])  # type: ignore[attr-defined]
    with pytest.raises(LinkTampered):
        await second.transport.recv()


def test_channel_keys_differ_per_direction_and_both_sides_agree() -> None:
    dialer, acceptor = EphemeralKey(), EphemeralKey()
    context = {
        "dialer": "alpha", "acceptor": "beta", "dialer_nonce": b"\x01" * 32, "acceptor_nonce": b"\x02" * 32,
        "dialer_key": dialer.public, "acceptor_key": acceptor.public,
    }  # fmt: skip
    on_dialer = derive_channel_keys(dialer.exchange(acceptor.public), **context)  # type: ignore[arg-type]
    on_acceptor = derive_channel_keys(acceptor.exchange(dialer.public), **context)  # type: ignore[arg-type]
    assert on_dialer == on_acceptor
    assert on_dialer.dial_to_accept != on_dialer.accept_to_dial
    assert len(on_dialer.dial_to_accept) == 32
    # Bound to who and what was signed: other site ids or nonces give other keys.
    other = derive_channel_keys(dialer.exchange(acceptor.public), **{**context, "dialer": "mallory"})  # type: ignore[arg-type]
    assert other.dial_to_accept != on_dialer.dial_to_accept
    other = derive_channel_keys(
        dialer.exchange(acceptor.public), **{**context, "acceptor_nonce": b"\x03" * 32}
    )  # type: ignore[arg-type]
    assert other.accept_to_dial != on_dialer.accept_to_dial


@pytest.mark.parametrize("bad", [b"\x00" * 32, b"\x01" + b"\x00" * 31, b"\x05" * 31])
def test_a_low_order_or_malformed_ephemeral_key_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        EphemeralKey().exchange(bad)


async def test_a_relay_swapping_in_its_own_ephemeral_key_is_refused(sites: dict[str, SiteIdentity]) -> None:
    alpha, beta = sites["alpha"], sites["beta"]
    dial_end, accept_end = pipe()
    relay_key = EphemeralKey()

    class Swapping(MemoryTransport):
        """The acceptor's end, with a relay rewriting CHALLENGE's ephemeral key."""

        async def send(self, data: bytes) -> None:
            message = decode_link_message(data) if data[0] == 2 else None
            if isinstance(message, Challenge):
                data = encode_link_message(
                    Challenge(message.nonce, relay_key.public, message.signature, message.max_frame)
                )
            await super().send(data)

    relayed = Swapping(accept_end._inbox, accept_end._outbox)

    async def dial() -> object:
        try:
            return await dial_handshake(dial_end, alpha, peer_of(beta), 1 << 20)
        except LinkRefused as exc:
            await dial_end.close(exc.code, exc.reason)  # the acceptor stops waiting for AUTH
            return exc

    dialed, _ = await asyncio.gather(
        dial(),
        accept_handshake(relayed, beta, {"alpha": peer_of(alpha)}, 1 << 20),
        return_exceptions=True,
    )
    assert isinstance(dialed, LinkRefused) and "wrong key" in dialed.reason
