"""Hooks: how the domain services (threads, search, versions, notifications, federation)
plug into the document path without single-slot callbacks.

- `before_apply` validators are synchronous and may refuse an update (raise `Refused`)
  before it touches the document. They never await: the room applies a message, stores it
  and fans it out without an `await`, and that no-interleaving guarantee depends on it.
- `after_apply` callbacks are synchronous too and run once an update is integrated into the
  room's document (before it is stored or fanned out), with the context `before_apply` saw:
  for in-memory state kept in step with a document (the thread index). They never raise
  into the room: a failing one is logged.
- `on_change` observers are async and run after the update is durable, in the change
  feed's task (owned by the app lifespan), never on the hot path.
- Lifecycle callbacks (`on_connect`, `on_disconnect`, `on_load`, `on_unload`) and
  `on_presence` (presence of this node's own clients) are synchronous notifications; an
  observer with slow work queues it for a task of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .auth.ports import Grant, Principal
from .errors import SamenError
from .origins import Origin

if TYPE_CHECKING:
    from crdt.document import Document

__all__ = ["ChangeEvent", "ChangeFeed", "Hooks", "Refused", "UpdateContext"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Past this many bytes of queued updates the feed keeps only the event, not the update
# (observers then re-read the document): slow observers cannot make the node grow.
_FEED_BYTES_LIMIT = 64 * 1024 * 1024


class Refused(SamenError):
    """An update that may not be applied. `kind` labels the metric; `cut_off` closes the
    sender's session instead of only refusing this update.

    Why cutting off exists: a refused update's clocks are skipped, so the sender's later
    updates would wait forever as pending. Refusing without cutting off is only right when
    none of the sender's updates can be applied either (a read-only session), or when the
    refusing hook compensates so the client never builds on what was refused.
    """

    def __init__(self, reason: str, *, kind: str = "refused", cut_off: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.cut_off = cut_off


@dataclass(frozen=True, slots=True)
class UpdateContext:
    """What a `before_apply` validator sees: the update, where it comes from, and the
    room's document as it is before the update (read it, never change it). Updates from a
    peer site to a document not open on this node load it first, so there is always one."""

    document_name: str
    update: bytes
    origin: Origin
    document: Document
    principal: Principal | None  # the session's principal, for updates from clients
    grant: Grant | None


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """A durable change: `update` is None when the feed was over its byte budget."""

    document: str
    update: bytes | None
    origin: Origin
    author: str


BeforeApply = Callable[[UpdateContext], None]
OnChange = Callable[[ChangeEvent], Awaitable[None]]
Notify = Callable[[str], None]
SessionNotify = Callable[[object], None]
PresenceNotify = Callable[[str, bytes], None]


class ChangeFeed:
    """Durable changes queue here; `run` hands them to the observers, one at a time."""

    def __init__(self, observers: list[OnChange], bytes_limit: int = _FEED_BYTES_LIMIT) -> None:
        self._observers = observers
        self._queue: deque[ChangeEvent] = deque()
        self._bytes = 0
        self._bytes_limit = bytes_limit
        self._ready = asyncio.Event()
        self.elided = 0
        self.failures = 0

    def publish(self, event: ChangeEvent) -> None:
        if not self._observers:
            return
        update = event.update
        if update is not None:
            if self._bytes + len(update) > self._bytes_limit:
                event = ChangeEvent(event.document, None, event.origin, event.author)
                self.elided += 1
            else:
                self._bytes += len(update)
        self._queue.append(event)
        self._ready.set()

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            event = self._queue.popleft()
            if event.update is not None:
                self._bytes -= len(event.update)
            for observer in self._observers:
                try:
                    await observer(event)
                except Exception:
                    # One failing observer must not starve the others or stop the feed.
                    self.failures += 1
                    log.exception("on_change observer %r failed for %r", observer, event.document)


class Hooks:
    """The registry of hooks of one node; `app.py` wires the services into it."""

    def __init__(self) -> None:
        self._before_apply: list[BeforeApply] = []
        self._after_apply: list[BeforeApply] = []
        self._on_change: list[OnChange] = []
        self._on_connect: list[SessionNotify] = []
        self._on_disconnect: list[SessionNotify] = []
        self._on_load: list[Notify] = []
        self._on_unload: list[Notify] = []
        self._on_presence: list[PresenceNotify] = []
        self.feed = ChangeFeed(self._on_change)

    # -- registration ----------------------------------------------------------------------

    def add_before_apply(self, validator: BeforeApply) -> None:
        self._before_apply.append(validator)

    def add_after_apply(self, callback: BeforeApply) -> None:
        self._after_apply.append(callback)

    def add_on_change(self, observer: OnChange) -> None:
        self._on_change.append(observer)

    def add_on_connect(self, callback: SessionNotify) -> None:
        self._on_connect.append(callback)

    def add_on_disconnect(self, callback: SessionNotify) -> None:
        self._on_disconnect.append(callback)

    def add_on_load(self, callback: Notify) -> None:
        self._on_load.append(callback)

    def add_on_unload(self, callback: Notify) -> None:
        self._on_unload.append(callback)

    def add_on_presence(self, callback: PresenceNotify) -> None:
        self._on_presence.append(callback)

    # -- running them ----------------------------------------------------------------------

    @property
    def validates(self) -> bool:
        """Does the room need to build an `UpdateContext` for its updates?"""
        return bool(self._before_apply or self._after_apply)

    def before_apply(self, context: UpdateContext) -> None:
        """Raises `Refused` from the first validator that refuses."""
        for validator in self._before_apply:
            validator(context)

    def applied(self, context: UpdateContext) -> None:
        _notify_all(self._after_apply, context)

    def changed(self, event: ChangeEvent) -> None:
        self.feed.publish(event)

    def connected(self, session: object) -> None:
        _notify_all(self._on_connect, session)

    def disconnected(self, session: object) -> None:
        _notify_all(self._on_disconnect, session)

    def loaded(self, document: str) -> None:
        _notify_all(self._on_load, document)

    def unloaded(self, document: str) -> None:
        _notify_all(self._on_unload, document)

    def presence(self, document: str, update: bytes) -> None:
        for callback in self._on_presence:
            try:
                callback(document, update)
            except Exception:
                log.exception("on_presence callback %r failed for %r", callback, document)


def _notify_all(callbacks: list[Callable[[T], None]], value: T) -> None:
    for callback in callbacks:
        try:
            callback(value)
        except Exception:
            log.exception("hook %r failed", callback)
