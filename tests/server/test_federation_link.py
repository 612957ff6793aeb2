"""Two link sessions over the in-memory pipe: no process, no socket, no timing.

The sender's periodic look at the log (IDLE_POLL_SECONDS) is switched off in these tests,
so a row that crosses did so because its commit woke the link, not because of the backstop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server.federation import link
from server.federation.handshake import accept_handshake, dial_handshake
from server.federation.identity import SiteIdentity, create_identity
from server.federation.link import LinkSession, LinkStats
from server.federation.peers import Peer, ReplicationScope
from server.store.memory import MemoryStore
from server.store.ports import AppendRow, LogRow

from .test_federation_handshake import MemoryTransport, pipe

DOC = "eng/page"


def hi_update() -> bytes:
    return bytes.fromhex("01 01 01 00 04 01 01 74 02 68 69 00")


class Target:
    """A node as a link sees it: records what arrived; everything is durable at once."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, bytes, str]] = []
        self.changed = asyncio.Event()

    def apply_from_site(self, document: str, update: bytes, origin: str) -> None:
        self.applied.append((document, update, origin))
        self.changed.set()

    def when_durable(self, callback: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_soon(callback)

    def apply_presence(self, document: str, update: bytes, origin: str) -> None:
        pass

    def drop_presence(self, origin: str) -> None:
        pass

    async def diff_for(self, document: str, state_vector: bytes) -> bytes:
        return b"\x00\x00"

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
    target: Target = field(default_factory=Target)
    stats: LinkStats = field(default_factory=LinkStats)

    @property
    def peer(self) -> Peer:
        return Peer(self.identity.site_id, ("ws://127.0.0.1:1/federation",), self.identity.public_key)


@pytest.fixture(autouse=True)
def no_idle_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(link, "IDLE_POLL_SECONDS", 3600.0)


@pytest.fixture
def make_side(tmp_path: Path) -> Callable[[str, str | None], Side]:
    def make(site_id: str, pause_at: str | None = None) -> Side:
        return Side(create_identity(site_id, tmp_path / f"{site_id}.pem"), PausingLog(pause_at))

    return make


def session(side: Side, other: Side, transport: MemoryTransport) -> LinkSession:
    scope = ReplicationScope({"eng": frozenset({other.identity.site_id})})
    return LinkSession(transport, other.peer, side.identity, scope, side.log, side.target, side.stats)


@asynccontextmanager
async def linked(
    dialer: Side, acceptor: Side, during_handshake: Callable[[], Awaitable[None]] | None = None
) -> AsyncIterator[tuple[LinkSession, LinkSession]]:
    """Authenticate over a pipe, then run both sessions until the block ends."""
    await dialer.log.open()
    await acceptor.log.open()
    dial_end, accept_end = pipe()

    async def accept() -> Peer:
        peer = await accept_handshake(accept_end, acceptor.identity, {dialer.identity.site_id: dialer.peer})
        if during_handshake is not None:
            await during_handshake()  # the dialer waits for WELCOME meanwhile
        return peer

    await asyncio.gather(dial_handshake(dial_end, dialer.identity, acceptor.peer), accept())
    sessions = session(dialer, acceptor, dial_end), session(acceptor, dialer, accept_end)
    async with asyncio.TaskGroup() as tasks:
        runs = [tasks.create_task(s.run()) for s in sessions]
        yield sessions
        for each in sessions:  # each end tells the other: both receive loops end
            await each.close(1000, "test over")
        async with asyncio.timeout(10):
            await asyncio.wait(runs)


async def commit(side: Side, sessions: list[LinkSession]) -> None:
    """What a node does on a commit: the row is durable, then the flush listener wakes the
    link sessions it has (Federation._on_flush)."""
    await side.log.append([AppendRow(DOC, hi_update(), author="ann@alpha")])
    for s in sessions:
        s.log_advanced()


@pytest.mark.parametrize("pause_at", ["get_cursor", "last_seq", "read_log_after"])
async def test_a_commit_while_the_link_starts_crosses_at_once(
    make_side: Callable[[str, str | None], Side], pause_at: str
) -> None:
    alpha, beta = make_side("alpha", pause_at), make_side("beta")
    async with linked(alpha, beta) as (alpha_session, _):
        await asyncio.wait_for(alpha.log.paused.wait(), 10)
        await commit(alpha, [alpha_session])  # exactly at `pause_at` of the sender's start
        alpha.log.resume.set()
        await beta.target.wait_for(1)
        assert beta.target.applied == [(DOC, hi_update(), "alpha")]
        await asyncio.wait_for(alpha.log.cursor_moved.wait(), 10)  # acknowledged
        assert await alpha.log.get_cursor("beta") == 1


async def test_a_commit_during_the_handshake_crosses_at_once(
    make_side: Callable[[str, str | None], Side],
) -> None:
    # No session exists yet to be woken: the session's first read must find the row.
    alpha, beta = make_side("alpha"), make_side("beta")
    async with linked(alpha, beta, during_handshake=lambda: commit(alpha, [])):
        await beta.target.wait_for(1)
    assert beta.target.applied == [(DOC, hi_update(), "alpha")]


async def test_commits_in_both_directions_while_both_sides_start(
    make_side: Callable[[str, str | None], Side],
) -> None:
    alpha, beta = make_side("alpha", "read_log_after"), make_side("beta", "read_log_after")
    async with linked(alpha, beta) as (alpha_session, beta_session):
        await asyncio.wait_for(asyncio.gather(alpha.log.paused.wait(), beta.log.paused.wait()), 10)
        await commit(alpha, [alpha_session])
        await commit(beta, [beta_session])
        alpha.log.resume.set()
        beta.log.resume.set()
        await asyncio.gather(alpha.target.wait_for(1), beta.target.wait_for(1))
