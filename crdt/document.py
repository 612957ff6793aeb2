"""One Yjs document in memory: apply updates with an origin, state vectors and diffs.

A `Document` has a pycrdt `Doc` (composition, never a subclass) and answers the questions
the sync path asks: did this update bring anything new, what does a peer at state vector
SV lack, what is the whole state.
"""

from __future__ import annotations

from typing import Any

import pycrdt

from .errors import InvalidStateVector, InvalidUpdate
from .updates import Novelty, classify

__all__ = ["Document"]


class Document:
    __slots__ = ("_changed", "_doc", "origin")

    def __init__(self) -> None:
        self._doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self._changed = False
        # The origin of the update being applied, for observers that run inside `apply`
        # (pycrdt does not hand the transaction origin to event callbacks).
        self.origin: object = None

    def _on_transaction(self, _event: Any) -> None:
        self._changed = True

    @property
    def ydoc(self) -> pycrdt.Doc[Any]:
        """The pycrdt document, for reading and rendering its content."""
        return self._doc

    def apply(self, update: bytes, origin: object = None) -> bool:
        """Apply a v1 update. Returns True if it brought anything new, either integrated or
        waiting for missing dependencies; False for a no-op. Raises `InvalidUpdate`, leaving
        the document unchanged, if the update does not decode."""
        novelty = classify(update, self._doc.get_state())
        if novelty == Novelty.KNOWN:
            return False
        if novelty == Novelty.NEW:
            self._apply(update, origin)
            return True
        # Only deletions of items we hold: new if any of them was still live. A transaction
        # observer tells; it costs more than the check above, so it is attached only here.
        self._changed = False
        subscription = self._doc.observe(self._on_transaction)
        try:
            self._apply(update, origin)
        finally:
            self._doc.unobserve(subscription)
        return self._changed

    def apply_unchecked(self, update: bytes) -> None:
        """Apply without asking whether the update is new (bulk loads, compaction)."""
        self._apply(update, None)

    def _apply(self, update: bytes, origin: object) -> None:
        self.origin = origin
        try:
            self._doc.apply_update(update)
        except ValueError as exc:
            raise InvalidUpdate(f"invalid update: {exc}") from exc
        except BaseException as exc:
            # yrs panics surface as pyo3's PanicException, a BaseException.
            if type(exc).__name__ == "PanicException":
                raise InvalidUpdate("update rejected by the CRDT core") from exc
            raise
        finally:
            self.origin = None

    def state_vector(self) -> bytes:
        return self._doc.get_state()

    def diff(self, state_vector: bytes) -> bytes:
        """What a peer at `state_vector` lacks, as one v1 update."""
        try:
            return self._doc.get_update(state_vector)
        except ValueError as exc:
            raise InvalidStateVector(f"invalid state vector: {exc}") from exc

    def full_update(self) -> bytes:
        return self._doc.get_update()
