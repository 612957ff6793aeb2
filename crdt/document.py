"""One Yjs document in memory: apply validated updates, say what they did, state vectors, diffs.

A `Document` has a pycrdt `Doc` (composition, never a subclass) and answers the questions
the sync path asks: is this update valid, did it bring anything new (or wait for missing
dependencies), does the document really hold what an update claims it already has, does the
update delete what the document does not have yet, what does a peer at state vector SV lack.

Every update goes through `update_format.read_update` before Yrs sees it, so what reaches
Yrs has clocks within what it represents, honest counts and encodings Yjs reads the same
way; whatever Yrs still raises (errors or pyo3 panics) becomes `InvalidUpdate`.

Costs per update: the reader (linear in the update, microseconds for a keystroke), one
`Doc.get_state()` (Rust, O(client ids of the document)) and byte scans of it for the few
clients the update touches; an update that does not fit the document's state vector (gaps,
missing dependencies) costs a second `get_state()`; deletions of known items attach a
transaction observer (Rust re-encodes the transaction). `holds` is described there.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pycrdt

from .content import structs_held
from .errors import InvalidStateVector, InvalidUpdate
from .state_vectors import lookup_clocks, lowered, read_state_vector
from .update_format import Run, UpdateSummary, read_update, read_update_detail
from .updates import Novelty, novelty, touched_clients

__all__ = ["ApplyResult", "Document", "Outcome"]

# How many pending updates a document remembers (by 16-byte digest) to tell a re-sent one.
_PENDING_MEMORY = 256


class Outcome(Enum):
    NEW = "new"  # integrated: the document changed
    # Not (fully) reflected in the state vector: waits for missing dependencies, or was
    # integrated after a gap. Worth storing the first time (`ApplyResult.repeated` False).
    PENDING = "pending"
    KNOWN = "known"  # nothing to do: every struct and deletion was already in effect


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What `Document.integrate` did with an update, and what the update writes.

    KNOWN means the state vector covers every struct and every deletion was in effect; it does
    not mean the document has the same content under those clocks: ask `Document.holds`
    before acknowledging a KNOWN update. `repeated` is True for a PENDING update that is
    byte-identical to one integrated earlier and still pending (nothing new to store)."""

    outcome: Outcome
    summary: UpdateSummary
    repeated: bool = False

    @property
    def worth_storing(self) -> bool:
        """New to this document: store it, relay it."""
        return self.outcome is Outcome.NEW or (self.outcome is Outcome.PENDING and not self.repeated)


class Document:
    __slots__ = ("_changed", "_doc", "_pending")

    def __init__(self, *, keep_deleted: bool = False) -> None:
        """`keep_deleted`: no garbage collection, so deleted items keep their content (for
        readers that compare or restore what was there, never for live rooms)."""
        self._doc: pycrdt.Doc[Any] = pycrdt.Doc(skip_gc=keep_deleted)
        self._changed = False
        self._pending: OrderedDict[bytes, None] = OrderedDict()

    @property
    def ydoc(self) -> pycrdt.Doc[Any]:
        """The pycrdt document, for reading and rendering its content."""
        return self._doc

    def apply(self, update: bytes, origin: object = None) -> bool:
        """Apply a v1 update. True if it is worth storing: it changed the document, or waits
        for missing dependencies and was not seen before. Raises `InvalidUpdate`, leaving the
        document unchanged, for an update the reader or Yrs refuses. `origin` is unused (kept
        for callers). Lets an update wait for an unknown parent (`integrate` with
        `unknown_parents=True`): use `integrate` for client updates."""
        return self.integrate(update, unknown_parents=True).worth_storing

    def integrate(
        self, update: bytes, *, unknown_parents: bool = False, summary: UpdateSummary | None = None
    ) -> ApplyResult:
        """Validate and apply a v1 update; see `ApplyResult`. Raises `InvalidUpdate`.

        A struct that names its parent by ID (the first item of a nested type, a new key of
        a nested map) must name a shared type: Yrs would stop half-way through the update
        with a RuntimeError. When the parent is neither in the document nor in the update,
        that cannot be checked yet, and Yrs would fail later, while integrating whichever
        update brings the parent, perhaps someone else's: such an update is refused
        ("resync") unless `unknown_parents` is True, for sources that checked it against a
        document that had the parent (the site's other nodes, peer sites). `summary`: what
        `read_update(update)` returned, for a caller that read the update already."""
        if summary is None:
            summary = read_update(update)
        if summary.is_empty:
            return ApplyResult(Outcome.KNOWN, summary)
        clients = touched_clients(summary) | summary.needs.keys()
        state = self._doc.get_state()
        clocks = lookup_clocks(state, clients)
        found = novelty(summary, clocks)
        if summary.parents and found is not Novelty.KNOWN:
            self._check_parents(summary, state, clocks, unknown_parents)
        if found is Novelty.NEW and any(runs[0][0] < clocks.get(c, 0) for c, runs in summary.structs.items()):
            # Yrs integrates the new tail of a struct whose head it has as if it continued
            # the document's item there: under other content that puts a string into an
            # array and breaks the document's own counts. Only the same content may overlap.
            if not self._holds(update, state, overlap_only=True):
                raise InvalidUpdate("rewrites clocks the document holds with other content")
        if found is Novelty.KNOWN:
            return ApplyResult(Outcome.KNOWN, summary)
        if found is Novelty.KNOWN_WITH_DELETIONS:
            changed = self._apply_observed(update)
            return ApplyResult(Outcome.NEW if changed else Outcome.KNOWN, summary)
        if _fits(summary, clocks):
            # Starts within what the document has and depends only on what it has: Yrs
            # integrates all of it, no need to look again.
            self._apply(update)
            return ApplyResult(Outcome.NEW, summary)
        digest = hashlib.blake2b(update, digest_size=16).digest()
        if digest in self._pending:
            self._pending.move_to_end(digest)
            return ApplyResult(Outcome.PENDING, summary, repeated=True)
        self._apply(update)
        after = lookup_clocks(self._doc.get_state(), clients)
        if novelty(summary, after) is not Novelty.NEW:
            return ApplyResult(Outcome.NEW, summary)
        self._pending[digest] = None
        if len(self._pending) > _PENDING_MEMORY:
            self._pending.popitem(last=False)
        return ApplyResult(Outcome.PENDING, summary)

    def _check_parents(
        self, summary: UpdateSummary, state: bytes, clocks: dict[int, int], unknown_parents: bool
    ) -> None:
        """Raise `InvalidUpdate` unless every parent ID names a shared type (or deleted or
        garbage-collected content, which Yrs accepts)."""
        in_document: dict[int, list[int]] = {}
        for client, clock in summary.parents:
            if clock < clocks.get(client, 0):  # the document's item is the one Yrs uses
                in_document.setdefault(client, []).append(clock)
            elif (client, clock) not in summary.types:
                run = _run_at(summary.structs.get(client, ()), clock)
                if run is None:
                    if not unknown_parents:
                        raise InvalidUpdate("parent not known yet (resync)")
                elif run[2]:
                    raise InvalidUpdate("parent is not a shared type")
        if not in_document:
            return
        query = lowered(state, {client: min(found) for client, found in in_document.items()})
        try:
            theirs = read_update(self._doc.get_update(query))
        except InvalidUpdate:
            raise InvalidUpdate("parent cannot be checked") from None
        for client, found in in_document.items():
            for clock in found:
                run = _run_at(theirs.structs.get(client, ()), clock)
                if run is not None and run[2] and (client, clock) not in theirs.types:
                    raise InvalidUpdate("parent is not a shared type")

    def holds(self, update: bytes) -> bool:
        """True when the document has every struct of `update` under the same clocks with
        the same content (see crdt/content.py for what "same" means). Deletions are not
        compared: an update whose deletions are not all in effect is not KNOWN anyway.
        Raises `InvalidUpdate` for an update the reader refuses.

        Cost: the update is read twice in detail (Python, linear in it); then, if the state
        vector covers it, Yrs encodes the document's structs of the update's clients from the
        update's first clock onwards, plus the document's whole delete set (Rust, O(document)
        for that set), and that diff is read in Python: linear in what those clients wrote
        after the update's clocks. Cheap for the usual re-sent recent edit; an old update of
        a client that has written much since costs in proportion."""
        return self._holds(update, self._doc.get_state(), overlap_only=False)

    def _holds(self, update: bytes, state: bytes, *, overlap_only: bool) -> bool:
        summary, ours = read_update_detail(update)
        if not summary.structs:
            return True
        covered = lookup_clocks(state, summary.structs)
        if not overlap_only and novelty(summary._replace(deletes={}), covered) is Novelty.NEW:
            return False
        query = lowered(state, {client: runs[0][0] for client, runs in summary.structs.items()})
        try:
            _, theirs = read_update_detail(self._doc.get_update(query))
        except InvalidUpdate:  # the document holds something the reader refuses: no vouching
            return False
        return structs_held(ours, theirs, covered, overlap_only=overlap_only)

    def deletes_beyond(self, update: bytes | UpdateSummary) -> dict[int, list[tuple[int, int]]]:
        """The delete ranges of `update` (or of its summary) that reach beyond this
        document's state vector and that the update does not bring itself (a deletion of
        another client's future edits), per client; empty when there are none. Raises
        `InvalidUpdate`."""
        summary = read_update(update) if isinstance(update, bytes) else update
        if not summary.deletes:
            return {}
        return summary.deletes_beyond(lookup_clocks(self._doc.get_state(), summary.deletes))

    def apply_unchecked(self, update: bytes) -> None:
        """Apply without reading the update first or asking whether it is new (bulk loads of
        what this server stored, compaction). Raises `InvalidUpdate` if Yrs refuses it."""
        self._apply(update)

    def _apply_observed(self, update: bytes) -> bool:
        """Apply a deletions-only update; True if it deleted anything still live. A
        transaction observer tells; it costs more than the state vector, so only here."""
        self._changed = False
        subscription = self._doc.observe(self._on_transaction)
        try:
            self._apply(update)
        finally:
            self._doc.unobserve(subscription)
        return self._changed

    def _on_transaction(self, _event: Any) -> None:
        self._changed = True

    def _apply(self, update: bytes) -> None:
        try:
            self._doc.apply_update(update)
        except Exception as exc:
            # ValueError for undecodable bytes, RuntimeError for some integration failures.
            raise InvalidUpdate("update rejected by the CRDT core") from exc
        except BaseException as exc:
            # yrs panics surface as pyo3's PanicException, a BaseException.
            if type(exc).__name__ == "PanicException":
                raise InvalidUpdate("update rejected by the CRDT core") from exc
            raise

    def state_vector(self) -> bytes:
        return self._doc.get_state()

    def diff(self, state_vector: bytes) -> bytes:
        """What a peer at `state_vector` lacks, as one v1 update. The state vector is
        validated first; raises `InvalidStateVector`."""
        read_state_vector(state_vector)
        try:
            return self._doc.get_update(state_vector)
        except Exception as exc:
            raise InvalidStateVector("state vector rejected by the CRDT core") from exc

    def full_update(self) -> bytes:
        return self._doc.get_update()


def _run_at(runs: Iterable[Run], clock: int) -> Run | None:
    for run in runs:
        if run[0] <= clock < run[1]:
            return run
    return None


def _fits(summary: UpdateSummary, clocks: dict[int, int]) -> bool:
    """Does Yrs surely integrate all of the update into a document at `clocks`? Each
    client's structs start at or before its clock and have no gap, every ID they refer to
    outside themselves is below the document's clock, and deletions stay within what the
    document will then have."""
    ends = {}
    for client, runs in summary.structs.items():
        end = runs[0][0]
        if end > clocks.get(client, 0):
            return False
        for start, stop, _ in runs:
            if start != end:
                return False
            end = stop
        ends[client] = end
    for client, clock in summary.needs.items():
        if clock > clocks.get(client, 0):
            return False
    for client, ranges in summary.deletes.items():
        if ranges and ranges[-1][1] > max(clocks.get(client, 0), ends.get(client, 0)):
            return False
    return True
