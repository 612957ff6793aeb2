"""Federation on one node: dialing and accepting site links, one per peer per site.

A link between two sites is one WebSocket: the site whose id sorts first dials, the other
accepts (both dialing would make two links, each refused by the other's lease). On each
site exactly one node holds a link, through a lease: the dialing site's nodes all wait for
the lease and the holder dials; an accepting node takes the lease or refuses the socket.

Every node, holder or not, tells the holders what they need: it publishes "log advanced"
after each commit and its clients' presence on shared documents, over the backplane.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidURI

from crdt.awareness import AwarenessLimits, AwarenessTable
from protocol.awareness import NULL_STATE, AwarenessEntry, decode_awareness_update, encode_awareness_update
from protocol.backplane import BackplaneKind, BackplaneMessage, decode_site_presence, encode_site_presence
from protocol.errors import ProtocolError

from ..backplane.ports import Backplane
from ..close_codes import CloseCode
from ..compaction import Compactor
from ..control import control_channel
from ..errors import StoreError
from ..listener import lift_frame_limit
from ..loops import Backoff
from ..persistence import UpdateWriter
from ..rooms import RoomManager
from ..store.ports import ReplicationLog
from .handshake import (
    PRE_AUTH_MAX_FRAME,
    Authenticated,
    LinkClosed,
    LinkRefused,
    accept_handshake,
    dial_handshake,
)
from .identity import SiteIdentity
from .lease import LeaseManager
from .limits import LinkLimits, shown
from .link import LinkSession
from .membership import FederatedSpaces
from .peers import Peer, PeersConfig
from .stats import LinkStats, link_metric_families
from .transports import AcceptedTransport, DialedTransport

__all__ = ["LINK_MAX_MESSAGE", "Federation"]

log = logging.getLogger(__name__)

LOG_CHANNEL = control_channel("log")
PRESENCE_CHANNEL = control_channel("presence")
LINK_MAX_MESSAGE = 64 * 1024 * 1024
_MIN_BACKOFF = 0.2
_MAX_BACKOFF = 10.0
BACKLOG_REFRESH_SECONDS = 2.0
LEASE_HANDOVER_SECONDS = 5.0
MAX_HANDSHAKES = 32  # unauthenticated site link handshakes at once


class Federation:
    def __init__(
        self,
        identity: SiteIdentity,
        config: PeersConfig,
        store: ReplicationLog,
        rooms: RoomManager,
        writer: UpdateWriter,
        backplane: Backplane,
        leases: LeaseManager,
        *,
        compactor: Compactor,
        accept_max_frame: int,
        tls: ssl.SSLContext | None = None,
        spaces: FederatedSpaces | None = None,
        limits: LinkLimits | None = None,
    ) -> None:
        self.identity = identity
        # The spaces of the store, their sites and roles; None: the peers file's only.
        self.spaces = spaces
        self._limits = limits = limits or LinkLimits()
        self._presence_limits = AwarenessLimits(
            max_entries=limits.presence_clients,
            max_clients=limits.presence_clients,
            max_state_bytes=limits.presence_state_bytes,
            rate=limits.presence_rate,
        )
        # The largest frame the /federation endpoint accepts (the server's message size
        # limit), told to dialing peers; what this node accepts when it dials is its own.
        self._accept_max_frame = accept_max_frame
        # What wss:// peers are verified with (SAMEN_LINK_CA_FILE, else the system CAs).
        self._tls = tls or ssl.create_default_context()
        self.config = config
        self.scope = config.scope
        self._store = store
        self._rooms = rooms
        self._writer = writer
        self._backplane = backplane
        self._leases = leases
        self._compactor = compactor
        self.stats: dict[str, LinkStats] = {peer: LinkStats() for peer in config.peers}
        self._sessions: dict[str, LinkSession] = {}
        self._accepted: dict[str, asyncio.Event] = {}  # set once an accepted link let go of its lease
        self._blocked: set[str] = set()
        self._handshaking = 0  # accepted sockets still in the handshake (not authenticated)
        self.handshake_failures: Counter[str] = Counter()  # by reason
        self._unblocked = asyncio.Event()
        # Presence received from each peer, by document, so it can be removed if the link drops.
        self._remote_presence: dict[str, dict[str, AwarenessTable]] = {}
        rooms.control.register(LOG_CHANNEL, self._on_log_advanced)
        rooms.control.register(PRESENCE_CHANNEL, self._on_site_presence)
        rooms.hooks.add_on_presence(self._on_local_presence)
        writer.add_flush_listener(self._on_flush)
        compactor.add_floor(self.compaction_floor)

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        await self._backplane.subscribe(LOG_CHANNEL)
        await self._backplane.subscribe(PRESENCE_CHANNEL)
        async with asyncio.TaskGroup() as tasks:
            if self.spaces is not None:
                await self._load_spaces(self.spaces)  # links start with the whole scope
                tasks.create_task(self._follow_spaces(self.spaces), name="federated-spaces")
            for peer in self.config.peers.values():
                if self._dials(peer):
                    tasks.create_task(self._dial_forever(peer), name=f"dial-{peer.site_id}")
            await self._watch_backlogs()

    async def _watch_backlogs(self) -> None:
        """Every node reports each peer's backlog and lag, link up or not: an alert on them
        must fire during a partition, when no link is there to count."""
        acked: dict[str, int] = {}
        while True:
            try:
                last = await self._store.last_seq()
                caught_up = False
                for peer, stats in self.stats.items():
                    cursor = await self._store.get_cursor(peer)
                    before = acked.get(peer, cursor)
                    stats.observe(last, cursor)
                    acked[peer] = stats.acked_seq
                    caught_up |= stats.acked_seq > before
                    stats.kept_rows = await self._store.rows_after(stats.acked_seq)
                    self._check_stuck(peer, stats)
                if caught_up:
                    self._compactor.floors_moved()  # rows kept for a peer that acknowledged them
            except StoreError as exc:
                log.debug("cannot refresh link backlogs: %s", exc)
            await asyncio.sleep(BACKLOG_REFRESH_SECONDS)

    async def _load_spaces(self, spaces: FederatedSpaces) -> None:
        backoff = Backoff(_MIN_BACKOFF, _MAX_BACKOFF)
        while True:
            try:
                await spaces.refresh()
                return
            except StoreError as exc:
                log.warning("cannot read the federated spaces: %s", exc)
                await backoff.wait()

    async def _follow_spaces(self, spaces: FederatedSpaces) -> None:
        """A space newly shared with a peer is sent whole at link-up (the inventory): so its
        link starts again."""
        while True:
            for peer in await spaces.changes():
                session = self._sessions.get(peer)
                if session is not None:
                    log.info("spaces newly shared with %s: starting its link again", peer)
                    await session.close(CloseCode.SERVICE_RESTART, "the spaces shared with you changed")

    def _check_stuck(self, peer: str, stats: LinkStats) -> None:
        """A link up or down is stuck when the peer is behind and nothing was acknowledged for
        `LinkLimits.stuck_after` seconds: say so once (WARNING), count it, and report it in /readyz."""
        idle = time.monotonic() - stats.progress_at
        stuck = stats.backlog > 0 and idle > self._limits.stuck_after
        if stuck and not stats.stuck:
            stats.stalls += 1
            log.warning(
                "link to %s is stuck: %d rows behind, nothing acknowledged for %.0f s (link %s, %d "
                "sessions in a row ended without progress)",
                peer, stats.backlog, idle, "up" if stats.up else "down", stats.sessions_without_progress,
            )  # fmt: skip
        elif stats.stuck and not stuck:
            log.info("link to %s is moving again", peer)
        stats.stuck = stuck

    def problems(self) -> list[str]:
        """For /readyz: the links that are stuck."""
        return [
            f"site link to {peer}: stuck, {stats.backlog} rows not acknowledged"
            for peer, stats in sorted(self.stats.items())
            if stats.stuck
        ]

    def _dials(self, peer: Peer) -> bool:
        return self.identity.site_id < peer.site_id

    async def _dial_forever(self, peer: Peer) -> None:
        backoff = Backoff(_MIN_BACKOFF, _MAX_BACKOFF)
        while True:
            await self._wait_unblocked(peer.site_id)
            try:
                lease = await self._leases.acquire(peer.site_id)
            except StoreError as exc:
                log.warning("cannot take the lease of the link to %s: %s", peer.site_id, exc)
                await backoff.wait()
                continue
            log.info("this node holds the link to %s", peer.site_id)
            try:
                async with asyncio.TaskGroup() as tasks:
                    dialing = tasks.create_task(self._dial_while_held(peer))
                    await lease.watch()
                    dialing.cancel()
            except Exception:
                # A bug in one link must not take the node down: log it, let go, start over.
                log.exception("the link to %s failed unexpectedly", peer.site_id)
                await backoff.wait()
            else:
                backoff.reset()
            finally:
                await lease.release()

    async def _dial_while_held(self, peer: Peer) -> None:
        backoff = Backoff(_MIN_BACKOFF, _MAX_BACKOFF)
        while True:
            await self._wait_unblocked(peer.site_id)
            for url in peer.urls:
                if await self._dial_once(peer, url):
                    break
            stats = self.stats[peer.site_id]
            if stats.sessions_without_progress == 0:
                backoff.reset()  # it worked (or was not reached): dial again soon
            await backoff.wait()

    async def _dial_once(self, peer: Peer, url: str) -> bool:
        """One connection to `peer`; True if it got past the handshake."""
        tls = self._tls if url.startswith("wss://") else None
        try:
            async with connect(
                url, ssl=tls, max_size=LINK_MAX_MESSAGE, open_timeout=5, close_timeout=2
            ) as conn:
                transport = DialedTransport(conn)
                try:
                    linked = await dial_handshake(transport, self.identity, peer, LINK_MAX_MESSAGE)
                except LinkRefused as exc:
                    log.error("link to %s at %s refused: %s", peer.site_id, url, exc.reason)
                    await transport.close(exc.code, exc.reason)
                    return False
                except (LinkClosed, TimeoutError) as exc:
                    log.warning("link to %s at %s: handshake failed: %s", peer.site_id, url, exc or "timeout")
                    return False
                log.info("link to %s up (dialed %s)", peer.site_id, url)
                await self._run_session(linked)
                return True
        except ssl.SSLCertVerificationError as exc:
            # Not a network hiccup: whoever answers there is not who the CAs vouch for.
            self.stats[peer.site_id].certificate_failures += 1
            log.error("link to %s at %s refused: its TLS certificate does not verify: %s",
                      peer.site_id, url, exc.verify_message or exc)  # fmt: skip
            return False
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            log.info("cannot reach %s at %s: %s", peer.site_id, url, exc or "timeout")
            return False

    async def accept(self, websocket: WebSocket) -> None:
        """The `/federation` endpoint: a peer site dials this one."""
        host = websocket.client.host if websocket.client else "?"
        if self._handshaking >= MAX_HANDSHAKES:
            # Strangers cannot hold more than this many handshakes (each up to
            # HANDSHAKE_TIMEOUT); a real peer redials.
            self.handshake_failures["busy"] += 1
            await websocket.close(CloseCode.TRY_AGAIN_LATER, "too many site link handshakes, try again later")
            return
        self._handshaking += 1
        try:
            await websocket.accept()
            transport = AcceptedTransport(websocket)
            if self.spaces is not None and not self.spaces.ready.is_set():
                await transport.close(
                    CloseCode.TRY_AGAIN_LATER, "starting, try again later"
                )  # its scope is not read yet
                return
            try:
                linked = await accept_handshake(
                    transport, self.identity, self.config.peers, self._accept_max_frame
                )
            except LinkRefused as exc:
                self.handshake_failures["refused"] += 1
                log.error("refused a site link from %s: %s", host, exc.reason)
                await transport.close(exc.code, exc.reason)
                return
            except (LinkClosed, TimeoutError) as exc:
                self.handshake_failures["dropped" if isinstance(exc, LinkClosed) else "timeout"] += 1
                log.warning(
                    "site link handshake from %s failed: %s", host, shown(str(exc)) if exc else "timeout"
                )
                await transport.close(CloseCode.PROTOCOL_ERROR, "handshake failed")
                return
        finally:
            self._handshaking -= 1
        # Authenticated: frames up to what the handshake told the peer (small until now).
        lift_frame_limit(websocket.scope)
        peer = linked.peer
        if self._dials(peer):
            await transport.close(
                CloseCode.CONFLICT, f"{self.identity.site_id} dials {peer.site_id}, not the other way"
            )
            return
        if peer.site_id in self._blocked:
            await transport.close(CloseCode.LINK_BLOCKED, "link switched off")
            return
        # A link this node accepted from that peer may still be letting go of its lease: the
        # peer saw its close frame before the release, and redials at once.
        ending = self._accepted.get(peer.site_id)
        if ending is not None:
            with suppress(TimeoutError):
                async with asyncio.timeout(LEASE_HANDOVER_SECONDS):
                    await ending.wait()
        try:
            lease = await self._leases.try_acquire(peer.site_id)
        except StoreError as exc:
            log.warning("cannot take the lease of the link from %s: %s", peer.site_id, exc)
            await transport.close(CloseCode.INTERNAL_ERROR, "store unavailable, reconnect later")
            return
        if lease is None:
            await transport.close(
                CloseCode.CONFLICT, f"another node of {self.identity.site_id} holds this link"
            )
            return
        log.info("link from %s up (accepted)", peer.site_id)
        released = self._accepted[peer.site_id] = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tasks:
                session = tasks.create_task(self._run_session(linked))
                watch = tasks.create_task(lease.watch())
                await asyncio.wait([session, watch], return_when=asyncio.FIRST_COMPLETED)
                session.cancel()
                watch.cancel()
        except Exception:
            log.exception("the link from %s failed unexpectedly", peer.site_id)
            await transport.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            await lease.release()
            released.set()
            if self._accepted.get(peer.site_id) is released:
                del self._accepted[peer.site_id]

    async def _run_session(self, linked: Authenticated) -> None:
        peer = linked.peer
        session = LinkSession(
            linked.transport,  # sealed: every frame from here on carries its MAC
            peer,
            self.identity,
            self.scope,
            self._store,
            self,
            self.stats[peer.site_id],
            linked.max_frame,
            memberships=self.spaces,
            limits=self._limits,
        )
        self._sessions[peer.site_id] = session
        stats = self.stats[peer.site_id]
        acked = stats.acked_seq
        try:
            await session.run()
        finally:
            if self._sessions.get(peer.site_id) is session:
                del self._sessions[peer.site_id]
            # A link that ended with the peer behind and nothing acknowledged made no
            # progress: the dialer backs off further each time (a peer that breaks the
            # protocol right after the handshake is not redialled five times a second).
            if session.violated or (stats.backlog > 0 and stats.acked_seq == acked):
                stats.sessions_without_progress += 1

    # -- what the links need (ReplicationTarget) --------------------------------------------

    async def apply_from_site(self, document: str, update: bytes, origin: str, author: str) -> bool:
        return await self._rooms.apply_from_site(document, update, origin, author)

    def when_durable(self, callback: Callable[[], None]) -> None:
        self._writer.when_durable(callback)

    def apply_presence(self, document: str, update: bytes, origin: str) -> None:
        """Presence from a peer, within the limits per peer (documents, client ids, state
        size, rate): what is over them is dropped and counted; only the accepted entries
        reach the rooms, where a peer can never touch the presence of a local connection."""
        stats = self.stats[origin]
        tables = self._remote_presence.setdefault(origin, {})
        table = tables.get(document)
        if table is None:
            if len(tables) >= self._limits.presence_documents:
                stats.presence_dropped += 1
                return
            table = tables[document] = AwarenessTable(self._presence_limits)
        held = sum(len(t.owned_by(origin)) for t in tables.values())
        if held >= self._limits.presence_clients:
            stats.presence_dropped += 1
            return
        # The peer is the table's one owner: the limits bind it; remembered to remove its
        # entries when the link drops.
        change = table.apply(update, origin, time.monotonic())
        stats.presence_dropped += change.dropped
        if change.update is not None:
            self._rooms.apply_site_presence(document, change.update, origin)

    def drop_presence(self, origin: str) -> None:
        for document, table in self._remote_presence.pop(origin, {}).items():
            entries = [AwarenessEntry(c, table.clock_of(c), NULL_STATE) for c in table.states]
            if entries:
                self._rooms.apply_site_presence(document, encode_awareness_update(entries), origin)

    async def diff_for(self, document: str, state_vector: bytes) -> bytes:
        return await self._rooms.diff_for(document, state_vector)

    # -- what every node tells the link holders ---------------------------------------------

    def _on_flush(self, rows: Counter[str]) -> None:
        if any(self.scope.peers_of(name) for name in rows):
            self._wake_links()
            self._backplane.publish(LOG_CHANNEL, BackplaneKind.LOG_ADVANCED)

    def _wake_links(self) -> None:
        for session in self._sessions.values():
            session.log_advanced()

    def _on_local_presence(self, document: str, update: bytes) -> None:
        if not self.scope.peers_of(document):
            return
        self._queue_presence(document, update)
        payload = encode_site_presence(document, update)
        self._backplane.publish(PRESENCE_CHANNEL, BackplaneKind.SITE_PRESENCE, payload)

    def _queue_presence(self, document: str, update: bytes) -> None:
        for session in self._sessions.values():
            try:
                session.queue_presence(document, update)
            except ProtocolError as exc:
                log.warning("bad presence update for %r: %s", document, exc.reason)

    def _on_log_advanced(self, message: BackplaneMessage) -> None:
        self._wake_links()

    def _on_site_presence(self, message: BackplaneMessage) -> None:
        if message.kind == BackplaneKind.SITE_PRESENCE and self._sessions:
            try:
                document, update = decode_site_presence(message.payload)
                decode_awareness_update(update)
            except ProtocolError as exc:
                log.warning("bad site presence from node %s: %s", message.origin, exc.reason)
                return
            self._queue_presence(document, update)

    # -- compaction, tests, metrics ---------------------------------------------------------

    async def compaction_floor(self, document: str) -> int | None:
        """Rows after the lowest cursor of the peers sharing `document` must stay in the log."""
        peers = self.scope.peers_of(document)
        if not peers:
            return None
        return min([await self._store.get_cursor(peer) for peer in peers])

    async def block(self, peer: str) -> None:
        """Test hook: cut the link to `peer` and refuse it until `unblock`."""
        self._blocked.add(peer)
        self._unblocked.clear()
        session = self._sessions.get(peer)
        if session is not None:
            await session.close(CloseCode.LINK_BLOCKED, "link switched off")

    def request_document(self, peer: str, document: str) -> bool:
        """Test hook and bootstrap aid: ask `peer` for all of `document`. False if no link."""
        session = self._sessions.get(peer)
        if session is None:
            return False
        session.request(document, b"\x00")
        return True

    def unblock(self, peer: str) -> None:
        self._blocked.discard(peer)
        self._unblocked.set()

    async def _wait_unblocked(self, peer: str) -> None:
        while peer in self._blocked:
            self._unblocked.clear()
            await self._unblocked.wait()

    def metric_families(self) -> Iterator[Metric]:
        yield from link_metric_families(self.stats)
        if self.spaces is not None:
            yield from self.spaces.metric_families()
        # What strangers can make this node hold: handshakes in progress, each at most
        # PRE_AUTH_MAX_FRAME bytes of frame (the listener's limit on /federation until then).
        yield GaugeMetricFamily(
            "samen_link_handshakes", "Site link handshakes in progress here", value=self._handshaking
        )
        yield GaugeMetricFamily(
            "samen_link_handshake_max_bytes",
            "Bytes all site link handshakes in progress may hold at most (handshakes x frame limit)",
            value=MAX_HANDSHAKES * PRE_AUTH_MAX_FRAME,
        )
        failures = CounterMetricFamily(
            "samen_link_handshake_failures",
            "Site link handshakes accepted here that failed (refused, dropped, timeout, busy)",
            labels=["reason"],
        )
        for reason, count in sorted(self.handshake_failures.items()):
            failures.add_metric([reason], count)
        yield failures
        compactor = self._compactor
        yield CounterMetricFamily(
            "samen_compaction_catchup_merges",
            "Compactions that merged the rows kept for lagging peers into catch-up rows",
            value=compactor.catchup_merges,
        )
        yield CounterMetricFamily(
            "samen_compaction_catchup_rows_merged",
            "Rows kept for lagging peers that were merged into catch-up rows",
            value=compactor.catchup_rows_merged,
        )
