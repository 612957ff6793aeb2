"""What an update adds relative to a state vector, without a document; merging updates.

The update is read and validated by `update_format.read_update` (so its clocks are within
what Yrs represents and the state vector comparison means what it says), and compared with
only the state-vector entries of the clients it touches.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

import pycrdt

from .errors import InvalidUpdate
from .state_vectors import lookup_clocks, read_state_vector
from .update_format import UpdateSummary, read_update

__all__ = [
    "EMPTY_UPDATE",
    "Novelty",
    "adds_nothing",
    "classify",
    "decode_state_vector",
    "merge",
    "novelty",
    "touched_clients",
]

EMPTY_UPDATE = b"\x00\x00"

# The strict decoder, under the name the callers know (raises InvalidStateVector).
decode_state_vector = read_state_vector


class Novelty(Enum):
    """What an update holds relative to a state vector."""

    NEW = "new"  # structs beyond the vector, or deletions of items beyond it (new or pending)
    KNOWN = "known"  # nothing beyond the vector and no deletions: a no-op
    KNOWN_WITH_DELETIONS = "known-with-deletions"  # deletes known items, which may still be live


def novelty(summary: UpdateSummary, clocks: Mapping[int, int]) -> Novelty:
    """Compare a read update with {client: clock} (absent clients at 0). Runs and delete
    ranges are sorted per client, so the last one's end is the highest clock touched."""
    for client, runs in summary.structs.items():
        if runs[-1][1] > clocks.get(client, 0):
            return Novelty.NEW
    for client, ranges in summary.deletes.items():
        if ranges and ranges[-1][1] > clocks.get(client, 0):
            return Novelty.NEW
    return Novelty.KNOWN_WITH_DELETIONS if summary.deletes else Novelty.KNOWN


def touched_clients(summary: UpdateSummary) -> set[int]:
    """The clients whose state-vector entries `novelty` reads."""
    return summary.structs.keys() | summary.deletes.keys()


def classify(update: bytes, state_vector: bytes) -> Novelty:
    """Compare `update` to a document at `state_vector` (Yrs-encoded) without applying it.
    Raises `InvalidUpdate` for an update the reader refuses."""
    summary = read_update(update)
    return novelty(summary, lookup_clocks(state_vector, touched_clients(summary)))


def adds_nothing(update: bytes, state_vector: bytes) -> bool:
    """True when a document at `state_vector` (with no pending updates) already holds every
    struct of `update` and every item it deletes (whether or not they are deleted yet)."""
    return classify(update, state_vector) != Novelty.NEW


def merge(updates: list[bytes]) -> bytes:
    """Merge v1 updates into one without a document (keeps pending parts)."""
    if not updates:
        return EMPTY_UPDATE
    if len(updates) == 1:
        return updates[0]
    try:
        return pycrdt.merge_updates(*updates)
    except ValueError as exc:
        raise InvalidUpdate(str(exc)) from exc
