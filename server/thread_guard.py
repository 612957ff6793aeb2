"""The thread contract on the document path (crdt/thread_rules.py states it).

For documents named `<space>/thread/<id>`, a `before_apply` validator judges every update of
a client session against the room's `ThreadIndex` (who sends it: the session's principal;
moderators: a MODERATE grant) and refuses what the contract forbids; an `after_apply`
callback keeps the index in step with every update the room applies, whatever its origin
(other nodes, peer sites, server edits and repairs are not judged here: their own node or
site judged them). The index is built from the room's document at the first client update
(one O(thread) pass per room load) and dropped when the room unloads.

A refusal keeps the socket (`Refused` without `cut_off`): Hocuspocus gets SyncStatus false,
y-websocket a resync; the document, the store and the other clients never see the update.
Why not cut the sender off: a provider that is closed reconnects and sends the same update
again, forever. Its later updates of the same client id follow the refused clocks; the
validator refuses those too (`thread_gap`) so that none waits as pending: the sender's copy
stays out of step until it reloads the thread (a new client id), and nothing it sends after
the refusal reaches anyone. Honest clients never get there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from crdt.document import Document
from crdt.thread_index import ThreadIndex
from crdt.thread_rules import ThreadRefused, Verdict, Writer, check_update
from crdt.update_format import read_update_detail

from .auth.ports import Grant
from .domain.threads import thread_of
from .hooks import Hooks, Refused, UpdateContext
from .origins import ClientOrigin

__all__ = ["ThreadGuard"]

log = logging.getLogger(__name__)


class ThreadGuard:
    def __init__(self, clock_tolerance: float, clock: Callable[[], float] = time.time) -> None:
        """`clock_tolerance`: seconds a new message's `created` may be off the server's clock."""
        self._tolerance_ms = clock_tolerance * 1000.0
        self._clock = clock
        self._indexes: dict[str, tuple[Document, ThreadIndex]] = {}
        # The verdict of the update being applied, for `after_apply` to commit.
        self._verdict: tuple[bytes, Verdict] | None = None

    def install(self, hooks: Hooks) -> None:
        hooks.add_before_apply(self.before_apply)
        hooks.add_after_apply(self.after_apply)
        hooks.add_on_unload(self.forget)

    def before_apply(self, context: UpdateContext) -> None:
        self._verdict = None
        if not isinstance(context.origin, ClientOrigin) or thread_of(context.document_name) is None:
            return
        index = self._index(context.document_name, context.document)
        principal, grant = context.principal, context.grant
        writer = Writer(
            principal.id if principal is not None else "", grant is not None and grant >= Grant.MODERATE
        )
        try:
            verdict = check_update(index, context.update, writer, self._clock() * 1000.0, self._tolerance_ms)
        except ThreadRefused as refusal:
            raise Refused(refusal.reason, kind=refusal.kind) from None
        self._verdict = (context.update, verdict)

    def after_apply(self, context: UpdateContext) -> None:
        verdict, self._verdict = self._verdict, None
        name = context.document_name
        entry = self._indexes.get(name)
        if entry is None or entry[0] is not context.document:
            return  # no index yet: it is built from the document, this update included
        index = entry[1]
        try:
            if verdict is not None and verdict[0] is context.update:
                verdict[1].commit(index)
            else:
                summary, details = read_update_detail(context.update)
                index.record(details, summary.deletes)
        except Exception:
            # An index that may be out of step is never used: the next client update rebuilds it.
            log.exception("%r: the thread index could not take an update; rebuilding it", name)
            del self._indexes[name]

    def forget(self, document: str) -> None:
        self._indexes.pop(document, None)

    def _index(self, name: str, document: Document) -> ThreadIndex:
        entry = self._indexes.get(name)
        if entry is not None and entry[0] is document:
            return entry[1]
        started = time.perf_counter()
        index = ThreadIndex.of_document(document.full_update())
        self._indexes[name] = (document, index)
        log.debug("%r: thread index of %d messages built in %.1f ms", name, len(index.messages),
                  (time.perf_counter() - started) * 1000)  # fmt: skip
        return index

    @property
    def open_indexes(self) -> int:
        return len(self._indexes)
