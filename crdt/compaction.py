"""Compaction: many logged updates → one equivalent, garbage-collected update."""

from __future__ import annotations

from collections.abc import Sequence

from .document import Document
from .errors import InvalidUpdate
from .updates import adds_nothing, merge

__all__ = ["compact"]


def compact(updates: Sequence[bytes]) -> bytes:
    """Return one update holding everything in `updates`.

    The content is re-encoded from a document (deleted text collapses to tombstones), and
    any update that is still waiting for a missing dependency is merged in raw, since a
    document's encoding would silently drop it. Raises `InvalidUpdate` on a corrupt update.
    """
    document = Document()
    for update in updates:
        document.apply_unchecked(update)
    state_vector = document.state_vector()
    pending = [update for update in updates if _may_be_pending(update, state_vector)]
    full = document.full_update()
    return merge([full, *pending]) if pending else full


def _may_be_pending(update: bytes, state_vector: bytes) -> bool:
    try:
        return not adds_nothing(update, state_vector)
    except InvalidUpdate:
        # Stored before the strict reader existed, and Yrs took it: keep it as it was.
        return True
