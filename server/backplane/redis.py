"""The Redis backplane: one pub/sub channel per document, one reader per process.

Redis pub/sub is fire-and-forget: a message published while a node is disconnected, or
dropped under load, is gone. So every message carries its origin's sequence number (see
`sequencing.py`); receivers detect gaps and repair them by state-vector sync, and after a
reconnect every open document is repaired because anything may have been missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from protocol.backplane import BackplaneKind, BackplaneMessage, decode_backplane, encode_backplane
from protocol.errors import ProtocolError

from .ports import BackplaneStats, MessageHandler, ReconnectHandler
from .sequencing import OutboundSequences

__all__ = ["RedisBackplane"]

log = logging.getLogger(__name__)

_MAX_BACKOFF = 5.0
_SUBSCRIBE_TIMEOUT = 5.0
_PUBLISH_BATCH = 256


class RedisBackplane:
    def __init__(self, url: str, prefix: str, node: str, *, heartbeat_interval: float = 0.5) -> None:
        self.node = node
        self.stats = BackplaneStats()
        self._url = url
        self._prefix = prefix
        self._doc_prefix = f"{prefix}doc:".encode()
        self._control = f"{prefix}node:{node}".encode()  # keeps the reader subscribed to something
        self._heartbeat_interval = heartbeat_interval
        self._client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_keepalive=True)
        self._sequences = OutboundSequences(node)
        self._subscribed: set[str] = set()
        self._confirmations: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._connected = False
        self._ever_connected = False
        self._outbox: deque[tuple[bytes, bytes]] = deque()
        self._outbox_ready = asyncio.Event()
        self._subscription_lock = asyncio.Lock()
        self._unsubscribe_queue: set[str] = set()
        self._unsubscribe_ready = asyncio.Event()
        self._on_message: MessageHandler = lambda _name, _msg: None
        self._on_reconnect: ReconnectHandler = lambda: None

    @property
    def connected(self) -> bool:
        return self._connected

    def set_handlers(self, on_message: MessageHandler, on_reconnect: ReconnectHandler) -> None:
        self._on_message = on_message
        self._on_reconnect = on_reconnect

    def _channel(self, name: str) -> bytes:
        return self._doc_prefix + name.encode()

    # -- outbound ------------------------------------------------------------------------

    def publish(self, name: str, kind: BackplaneKind, payload: bytes = b"", target: str = "") -> int:
        message = self._sequences.next(name, kind, payload, target)
        self._queue(name, message)
        return message.seq

    def _queue(self, name: str, message: BackplaneMessage) -> None:
        self._outbox.append((self._channel(name), encode_backplane(message)))
        self._outbox_ready.set()

    def mark_durable(self, name: str, seq: int) -> None:
        self._sequences.mark_durable(name, seq)

    async def _publish_loop(self) -> None:
        backoff = 0.05
        while True:
            if not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), _PUBLISH_BATCH))]
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for channel, data in batch:
                        pipe.publish(channel, data)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                # Dropped, not retried: by the time Redis is back the receivers have moved on
                # and repair by state vector instead (their sequence numbers show the gap).
                self.stats.publish_failures += len(batch)
                log.warning("backplane publish of %d messages failed: %s", len(batch), exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            backoff = 0.05
            self.stats.published += len(batch)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            for name, message in self._sequences.heartbeats(self._subscribed):
                self._queue(name, message)

    # -- inbound -------------------------------------------------------------------------

    async def subscribe(self, name: str) -> None:
        self._subscribed.add(name)
        channel = self._channel(name)
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            # The lock keeps SUBSCRIBE/UNSUBSCRIBE of one channel in the order they were decided.
            async with self._subscription_lock:
                pubsub = self._pubsub
                if pubsub is None or not self._connected:
                    return  # made on reconnect, which also repairs the document
                self._confirmations.setdefault(channel, deque()).append(confirmed)
                await pubsub.subscribe(channel)
            async with asyncio.timeout(_SUBSCRIBE_TIMEOUT):
                await asyncio.shield(confirmed)
        except (RedisError, OSError, ConnectionError, TimeoutError) as exc:
            log.warning("subscribing to %r failed (%s); retried on reconnect", name, exc)

    def unsubscribe(self, name: str) -> None:
        self._subscribed.discard(name)
        self._unsubscribe_queue.add(name)
        self._unsubscribe_ready.set()

    async def _unsubscribe_loop(self) -> None:
        while True:
            await self._unsubscribe_ready.wait()
            self._unsubscribe_ready.clear()
            async with self._subscription_lock:
                # A document opened again meanwhile keeps its subscription.
                names = [n for n in self._unsubscribe_queue if n not in self._subscribed]
                self._unsubscribe_queue.clear()
                if not names or self._pubsub is None or not self._connected:
                    continue
                try:
                    await self._pubsub.unsubscribe(*(self._channel(n) for n in names))
                except (RedisError, OSError) as exc:
                    log.debug("unsubscribe failed: %s", exc)  # a stale subscription is harmless

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._read_loop(), name="backplane-reader")
            tasks.create_task(self._publish_loop(), name="backplane-publisher")
            tasks.create_task(self._heartbeat_loop(), name="backplane-heartbeat")
            tasks.create_task(self._unsubscribe_loop(), name="backplane-unsubscriber")

    async def _read_loop(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=False)
            try:
                async with self._subscription_lock:
                    await pubsub.subscribe(self._control, *(self._channel(n) for n in self._subscribed))
                    self._pubsub = pubsub
                    self._connected = True
                backoff = 0.05
                if self._ever_connected:
                    self.stats.reconnects += 1
                    log.warning("backplane reconnected; repairing %d documents", len(self._subscribed))
                self._ever_connected = True
                if self._subscribed:
                    # Documents opened while disconnected, or open across the outage, may
                    # have missed messages: repair them all.
                    self._on_reconnect()
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._dispatch(message)
            except (RedisError, OSError) as exc:
                if self._connected:
                    log.warning("backplane lost Redis: %s", exc)
                self._connected = False
                self._pubsub = None
                self._fail_confirmations()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
            finally:
                self._connected = False
                self._pubsub = None
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except (RedisError, OSError):
                    pass

    def _fail_confirmations(self) -> None:
        for waiters in self._confirmations.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(ConnectionError("backplane disconnected"))
                    waiter.exception()
        self._confirmations.clear()

    def _dispatch(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        if not isinstance(channel, bytes):
            return
        if kind == "subscribe":
            waiters = self._confirmations.get(channel)
            if waiters:
                waiter = waiters.popleft()
                if not waiters:
                    del self._confirmations[channel]
                if not waiter.done():
                    waiter.set_result(None)
            return
        if kind != "message" or not channel.startswith(self._doc_prefix):
            return
        data = message.get("data")
        if not isinstance(data, bytes):
            return
        name = channel[len(self._doc_prefix) :].decode("utf-8", "replace")
        try:
            decoded = decode_backplane(data)
        except ProtocolError as exc:
            log.warning("undecodable backplane message on %r: %s", name, exc.reason)
            return
        if decoded.origin == self.node:
            return
        self.stats.received += 1
        try:
            self._on_message(name, decoded)
        except Exception:
            # One bad message must not stop the reader that serves every document.
            log.exception(
                "handling backplane %s on %r from %s failed", decoded.kind.name, name, decoded.origin
            )

    async def close(self) -> None:
        await self._client.aclose()
