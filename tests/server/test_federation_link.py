"""Two link sessions over the in-memory pipe: no process, no socket, no timing.

The sender's periodic look at the log (IDLE_POLL_SECONDS) is switched off in these tests,
so a row that crosses did so because its commit woke the link, not because of the backstop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pycrdt
import pytest

from crdt.compaction import compact as merge
from crdt.document import Document
from protocol.errors import ProtocolError
from protocol.link_channel import MAC_BYTES
from protocol.sitelink import (
    MIN_FRAME_LIMIT,
    Ack,
    Batch,
    decode_batch_body,
    decode_link_message,
    encode_link_message,
)
from server.close_codes import CloseCode
from server.federation import link
from server.federation.handshake import Authenticated, accept_handshake, dial_handshake
from server.federation.identity import SiteIdentity, create_identity
from server.federation.inventory import EMPTY_STATE_VECTOR
from server.federation.link import LinkSession, LinkStats
from server.federation.peers import Peer, ReplicationScope
from server.store.memory import MemoryStore
from server.store.ports import AppendRow, LogRow

from .test_federation_handshake import MemoryTransport

DOC = "eng/page"


def hi_update() -> bytes:
    return bytes.fromhex("01 01 01 00 04 01 01 74 02 68 69 00")


class Target:
    """A node as a link sees it: stores what arrived in its site's log (with the origin),
    everything is durable at once, and answers from its log."""

    def __init__(self, log: MemoryStore) -> None:
        self.log = log
        self.applied: list[tuple[str, bytes, str]] = []
        self.authors: list[str] = []
        self.changed = asyncio.Event()
        self._writes: set[asyncio.Task[None]] = set()

    async def apply_from_site(self, document: str, update: bytes, origin: str, author: str) -> bool:
        self.applied.append((document, update, origin))
        self.authors.append(author)
        # The memory store's append finishes in its first step: before any later callback.
        row = AppendRow(document, update, origin, author)
        write = asyncio.get_running_loop().create_task(self.log.append([row]))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        self.changed.set()
        return True

    def when_durable(self, callback: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_soon(callback)

    def apply_presence(self, document: str, update: bytes, origin: str) -> None:
        pass

    def drop_presence(self, origin: str) -> None:
        pass

    async def diff_for(self, document: str, state_vector: bytes) -> bytes:
        doc = Document()
        for update in (await self.log.load(document)).all_updates():
            doc.apply_unchecked(update)
        return doc.diff(state_vector)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.applied) < count:
                self.changed.clear()
                await self.changed.wait()


class PausingLog(MemoryStore):
    """A site's log whose first call of `method` does its work, then waits for `resume`:
    whatever the test does meanwhile happens exactly at that point of the link's start."""

    def __init__(self, method: str | None = None) -> None:
        super().__init__()
        self.method = method
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()
        self.cursor_moved = asyncio.Event()
        self.spaces_recorded = asyncio.Event()

    async def _maybe_pause(self, method: str) -> None:
        if method == self.method and not self.paused.is_set():
            self.paused.set()
            await self.resume.wait()

    async def get_cursor(self, peer: str) -> int:
        cursor = await super().get_cursor(peer)
        await self._maybe_pause("get_cursor")
        return cursor

    async def last_seq(self) -> int:
        seq = await super().last_seq()
        await self._maybe_pause("last_seq")
        return seq

    async def set_synced_spaces(self, peer: str, spaces: Collection[str]) -> None:
        await super().set_synced_spaces(peer, spaces)
        self.spaces_recorded.set()

    async def set_cursor(self, peer: str, seq: int) -> None:
        await super().set_cursor(peer, seq)
        self.cursor_moved.set()

    async def read_log_after(self, seq: int, limit: int) -> list[LogRow]:
        rows = await super().read_log_after(seq, limit)  # read before the commit: sees nothing
        await self._maybe_pause("read_log_after")
        return rows


@dataclass
class Side:
    identity: SiteIdentity
    log: PausingLog
    scope: ReplicationScope
    max_frame: int = 1 << 20
    stats: LinkStats = field(default_factory=LinkStats)
    sent_largest: int = 0  # the largest frame this side sent, once the link is over
    target: Target = field(init=False)

    def __post_init__(self) -> None:
        self.target = Target(self.log)

    @property
    def peer(self) -> Peer:
        return Peer(self.identity.site_id, ("ws://127.0.0.1:1/federation",), self.identity.public_key)


@pytest.fixture(autouse=True)
def no_idle_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(link, "IDLE_POLL_SECONDS", 3600.0)


@pytest.fixture
def make_side(tmp_path: Path) -> Callable[..., Side]:
    def make(
        site_id: str,
        pause_at: str | None = None,
        spaces: tuple[str, ...] = ("eng",),
        max_frame: int = 1 << 20,
    ) -> Side:
        other = "beta" if site_id == "alpha" else "alpha"
        scope = ReplicationScope({space: frozenset({other}) for space in spaces})
        return Side(
            create_identity(site_id, tmp_path / f"{site_id}.pem"), PausingLog(pause_at), scope, max_frame
        )

    return make


class RecordingTransport(MemoryTransport):
    """One end of the pipe that remembers the largest frame it sent."""

    largest = 0

    async def send(self, data: bytes) -> None:
        self.largest = max(self.largest, len(data))
        await super().send(data)


def recording_pipe() -> tuple[RecordingTransport, RecordingTransport]:
    a: asyncio.Queue[bytes | None] = asyncio.Queue()
    b: asyncio.Queue[bytes | None] = asyncio.Queue()
    return RecordingTransport(a, b), RecordingTransport(b, a)


def session(side: Side, linked: Authenticated) -> LinkSession:
    return LinkSession(  # on the sealed transport the handshake made of the pipe's end
        linked.transport,
        linked.peer,
        side.identity,
        side.scope,
        side.log,
        side.target,
        side.stats,
        linked.max_frame,
    )


@asynccontextmanager
async def linked(
    dialer: Side,
    acceptor: Side,
    during_handshake: Callable[[], Awaitable[None]] | None = None,
    *,
    whole: bool = True,
) -> AsyncIterator[tuple[LinkSession, LinkSession]]:
    """Authenticate over a pipe, then run both sessions until the block ends. `whole`: each
    side already holds the spaces it shares with the other (no inventory)."""
    for side, other in ((dialer, acceptor), (acceptor, dialer)):
        await side.log.open()
        if whole:
            await side.log.set_synced_spaces(
                other.identity.site_id, side.scope.spaces_shared_with(other.identity.site_id)
            )
    dial_end, accept_end = recording_pipe()

    async def accept() -> Authenticated:
        known = {dialer.identity.site_id: dialer.peer}
        linked = await accept_handshake(accept_end, acceptor.identity, known, acceptor.max_frame)
        if during_handshake is not None:
            await during_handshake()  # the dialer waits for WELCOME meanwhile
        return linked

    dialed, accepted = await asyncio.gather(
        dial_handshake(dial_end, dialer.identity, acceptor.peer, dialer.max_frame), accept()
    )
    sessions = session(dialer, dialed), session(acceptor, accepted)
    async with asyncio.TaskGroup() as tasks:
        runs = [tasks.create_task(s.run()) for s in sessions]
        yield sessions
        for each in sessions:  # each end tells the other: both receive loops end
            await each.close(1000, "test over")
        async with asyncio.timeout(10):
            await asyncio.wait(runs)
    dialer.sent_largest, acceptor.sent_largest = dial_end.largest, accept_end.largest


async def commit(side: Side, sessions: list[LinkSession]) -> None:
    """What a node does on a commit: the row is durable, then the flush listener wakes the
    link sessions it has (Federation._on_flush)."""
    await side.log.append([AppendRow(DOC, hi_update(), author=f"ann@{side.identity.site_id}")])
    for s in sessions:
        s.log_advanced()


@pytest.mark.parametrize("pause_at", ["get_cursor", "last_seq", "read_log_after"])
async def test_a_commit_while_the_link_starts_crosses_at_once(
    make_side: Callable[..., Side], pause_at: str
) -> None:
    alpha, beta = make_side("alpha", pause_at), make_side("beta")
    async with linked(alpha, beta) as (alpha_session, _):
        await asyncio.wait_for(alpha.log.paused.wait(), 10)
        await commit(alpha, [alpha_session])  # exactly at `pause_at` of the sender's start
        alpha.log.resume.set()
        await beta.target.wait_for(1)
        assert beta.target.applied == [(DOC, hi_update(), "alpha")]
        assert beta.target.authors == ["ann@alpha"]
        await asyncio.wait_for(alpha.log.cursor_moved.wait(), 10)  # acknowledged
        assert await alpha.log.get_cursor("beta") == 1


async def test_each_update_crosses_with_its_author(make_side: Callable[..., Side]) -> None:
    alpha, beta = make_side("alpha"), make_side("beta")
    await alpha.log.open()
    updates = typed("abc")
    authors = ["ann@alpha", "bob@alpha", ""]  # "": the site itself (a server edit)
    await alpha.log.append([AppendRow(DOC, u, author=a) for u, a in zip(updates, authors, strict=True)])
    await alpha.log.append([AppendRow(DOC, hi_update(), "gamma", "cy@gamma")])  # not alpha's: not sent
    async with linked(alpha, beta):
        await beta.target.wait_for(3)
    assert beta.target.authors == authors
    rows = await beta.log.read_log_after(0, 10)
    assert [(row.origin, row.author) for row in rows] == [("alpha", a) for a in authors]


async def test_a_commit_during_the_handshake_crosses_at_once(
    make_side: Callable[..., Side],
) -> None:
    # No session exists yet to be woken: the session's first read must find the row.
    alpha, beta = make_side("alpha"), make_side("beta")
    async with linked(alpha, beta, during_handshake=lambda: commit(alpha, [])):
        await beta.target.wait_for(1)
    assert beta.target.applied == [(DOC, hi_update(), "alpha")]


async def test_commits_in_both_directions_while_both_sides_start(
    make_side: Callable[..., Side],
) -> None:
    alpha, beta = make_side("alpha", "read_log_after"), make_side("beta", "read_log_after")
    async with linked(alpha, beta) as (alpha_session, beta_session):
        await asyncio.wait_for(asyncio.gather(alpha.log.paused.wait(), beta.log.paused.wait()), 10)
        await commit(alpha, [alpha_session])
        await commit(beta, [beta_session])
        alpha.log.resume.set()
        beta.log.resume.set()
        await asyncio.gather(alpha.target.wait_for(1), beta.target.wait_for(1))


# -- the inventory: spaces newly shared with a peer are sent whole --


def typed(text: str) -> list[bytes]:
    doc = pycrdt.Doc()
    shared = doc.get("t", type=pycrdt.Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for char in text:
        shared += char
    return updates


def text_in(updates: list[bytes]) -> str:
    doc = pycrdt.Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("t", type=pycrdt.Text))


async def stored_text(side: Side, document: str) -> str:
    return text_in((await side.log.load(document)).all_updates())


async def write(side: Side, document: str, text: str, *, compact: bool = False) -> None:
    await side.log.append([AppendRow(document, update, author="ann@alpha") for update in typed(text)])
    if compact:  # what the compactor did while no peer shared the space: no row is left
        assert await side.log.compact(document, merge) == len(text)
        assert await side.log.log_length(document) == 0


async def wait_for_documents(side: Side, names: set[str]) -> None:
    async with asyncio.timeout(10):
        while not names <= {name for name, _, _ in side.target.applied}:
            side.target.changed.clear()
            await side.target.changed.wait()


async def wait_for_spaces(side: Side, peer: str, spaces: set[str]) -> None:
    async with asyncio.timeout(10):
        while await side.log.synced_spaces(peer) != spaces:
            side.log.spaces_recorded.clear()
            await side.log.spaces_recorded.wait()


async def test_a_new_peer_gets_every_document_of_its_spaces_whole(make_side: Callable[..., Side]) -> None:
    alpha = make_side("alpha", spaces=("eng", "ops"))
    beta = make_side("beta", spaces=("eng", "ops"))
    await alpha.log.open()
    await write(alpha, "eng/compacted", "merged before beta was a peer", compact=True)
    await write(alpha, "eng/rows", "still in the log")
    await write(alpha, "ops/runbook", "ops too", compact=True)
    await write(alpha, "hr/salaries", "not shared with beta")
    async with linked(alpha, beta, whole=False) as (alpha_session, _):
        await wait_for_documents(beta, {"eng/compacted", "eng/rows", "ops/runbook"})
        await wait_for_spaces(alpha, "beta", {"eng", "ops"})
        await wait_for_spaces(beta, "alpha", {"eng", "ops"})  # beta had nothing: an empty one
        # Beta holds everything of alpha's log up to the inventory: its cursor says so.
        await asyncio.wait_for(alpha.log.cursor_moved.wait(), 10)
        assert await alpha.log.get_cursor("beta") == await alpha.log.last_seq()
        for name in ("eng/compacted", "eng/rows", "ops/runbook"):
            assert await stored_text(beta, name) == await stored_text(alpha, name)
        # One merged state each, not the rows: the log up to the inventory is not sent.
        applied = sorted(name for name, _, _ in beta.target.applied)
        assert applied == ["eng/compacted", "eng/rows", "ops/runbook"]
        assert alpha.stats.inventory_documents_sent == 3 and alpha.stats.updates_sent == 0
        assert set(beta.target.authors) == {""}  # merged states: the site's, no one person's

        await commit(alpha, [alpha_session])  # after the inventory: the log, as usual
        await beta.target.wait_for(4)
        assert beta.target.applied[-1] == (DOC, hi_update(), "alpha") and alpha.stats.updates_sent == 1
    assert await beta.log.list_documents("hr/", "", 10) == []


async def test_a_space_newly_shared_with_a_peer_is_sent_whole(make_side: Callable[..., Side]) -> None:
    alpha = make_side("alpha", spaces=("eng", "ops"))
    beta = make_side("beta", spaces=("eng", "ops"))
    await alpha.log.open()
    await write(alpha, "eng/known", "beta has had this all along")
    await write(alpha, "ops/new", "compacted while ops was not shared", compact=True)
    await alpha.log.set_cursor("beta", await alpha.log.last_seq())  # beta acknowledged all
    await alpha.log.set_synced_spaces("beta", {"eng", "hr"})  # hr: shared once, no longer
    await beta.log.open()
    await beta.log.set_synced_spaces("alpha", {"eng", "ops"})
    async with linked(alpha, beta, whole=False):
        await wait_for_documents(beta, {"ops/new"})
        await wait_for_spaces(alpha, "beta", {"eng", "ops"})
    assert [name for name, _, _ in beta.target.applied] == ["ops/new"]
    assert await stored_text(beta, "ops/new") == "compacted while ops was not shared"
    assert alpha.stats.inventory_documents_sent == 1


# -- messages larger than the peer's frame limit cross in fragments --


def big_text_updates(size: int, pieces: int) -> list[bytes]:
    doc = pycrdt.Doc()
    shared = doc.get("t", type=pycrdt.Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(pieces):
        shared += chr(ord("a") + i) * (size // pieces)
    return updates


async def test_answers_larger_than_the_frame_limit_cross_in_fragments(make_side: Callable[..., Side]) -> None:
    alpha = make_side("alpha", max_frame=MIN_FRAME_LIMIT)
    beta = make_side("beta", max_frame=MIN_FRAME_LIMIT)  # each takes 64 KiB frames at most
    await alpha.log.open()
    whole = big_text_updates(1 << 20, 4)  # 1 MiB in 4 updates of 256 KiB
    await alpha.log.append([AppendRow("eng/inventoried", update) for update in whole])
    await alpha.log.compact("eng/inventoried", merge)  # one 1 MiB snapshot
    async with linked(alpha, beta, whole=False) as (alpha_session, beta_session):
        await wait_for_documents(beta, {"eng/inventoried"})  # an inventory entry of 1 MiB

        # A batch of log rows: each 256 KiB row alone is above the limit, and small rows
        # travel together up to half of it.
        rows = big_text_updates(1 << 20, 4)
        await alpha.log.append(
            [AppendRow("eng/logged", update) for update in rows]
            + [AppendRow("eng/small", f"{i}".encode()) for i in range(100)]
        )
        alpha_session.log_advanced()
        await beta.target.wait_for(1 + 4 + 100)

        beta_session.request("eng/inventoried", EMPTY_STATE_VECTOR)  # a WANT answer of 1 MiB
        await beta.target.wait_for(1 + 4 + 100 + 1)
        assert await stored_text(beta, "eng/logged") == text_in(rows)
        assert await stored_text(beta, "eng/inventoried") == text_in(whole)
    assert alpha.stats.batches_rejected == beta.stats.batches_rejected == 0
    assert 0 < alpha.sent_largest <= MIN_FRAME_LIMIT


# -- the sealed channel: a relay can neither forge an ACK nor drop a batch --


class DroppingRelay(RecordingTransport):
    """The acceptor's end of the pipe with a relay in front of it: it swallows the first
    batch from the log (seqs > 0) and answers the sender with a forged ACK for it."""

    dropped: list[int]

    async def recv(self) -> bytes:
        while True:
            frame = await super().recv()
            try:  # a sealed frame is the message and its MAC: a relay can read it
                message = decode_link_message(frame[:-MAC_BYTES])
            except ProtocolError:
                return frame  # a handshake frame (not sealed)
            if isinstance(message, Batch) and not self.dropped:
                last = decode_batch_body(message.body).last_seq
                if last:
                    self.dropped.append(last)
                    # The relay has no key: any 32 bytes stand for the MAC.
                    await self._outbox.put(encode_link_message(Ack(last)) + b"\x00" * MAC_BYTES)
                    continue
            return frame


async def test_a_relay_that_drops_a_batch_and_forges_its_ack_ends_the_link_loudly(
    make_side: Callable[..., Side], caplog: pytest.LogCaptureFixture
) -> None:
    alpha, beta = make_side("alpha"), make_side("beta")
    for side, other in ((alpha, beta), (beta, alpha)):
        await side.log.open()
        await side.log.set_synced_spaces(
            other.identity.site_id, side.scope.spaces_shared_with(other.identity.site_id)
        )
    await alpha.log.append([AppendRow(DOC, hi_update(), author="ann@alpha")])
    a: asyncio.Queue[bytes | None] = asyncio.Queue()
    b: asyncio.Queue[bytes | None] = asyncio.Queue()
    dial_end, relay = RecordingTransport(a, b), DroppingRelay(b, a)
    relay.dropped = []
    dialed, accepted = await asyncio.gather(
        dial_handshake(dial_end, alpha.identity, beta.peer, alpha.max_frame),
        accept_handshake(relay, beta.identity, {"alpha": alpha.peer}, beta.max_frame),
    )
    sessions = session(alpha, dialed), session(beta, accepted)
    async with asyncio.timeout(10):
        await asyncio.gather(*(s.run() for s in sessions))  # both end: alpha closes, beta sees it
    assert relay.dropped == [1]
    assert sessions[0].violated and alpha.stats.integrity_failures == 1
    assert dial_end.closed is not None and dial_end.closed[0] == CloseCode.LINK_INTEGRITY
    assert await alpha.log.get_cursor("beta") == 0  # the forged ACK moved nothing
    assert alpha.stats.acked_seq == 0 and alpha.stats.backlog == 1
    assert beta.target.applied == []  # beta never got the row: it is sent again next link
    assert "link to beta failed its integrity check: frame" in caplog.text
    assert any(r.levelname == "ERROR" and "integrity" in r.getMessage() for r in caplog.records)
