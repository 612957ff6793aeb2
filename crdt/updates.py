"""Reading Yjs v1 updates and state vectors without a document: what an update adds.

pycrdt's `Doc.get_update()` leaves out updates whose dependencies are still missing
("pending"), and applying such an update emits no event. So "no event fired" does not mean
"nothing new": this module tells a true no-op from a pending update by diffing the update
against the document's state vector.
"""

from __future__ import annotations

from enum import Enum

import pycrdt

from protocol.errors import ProtocolError
from protocol.lib0 import Decoder

from .errors import InvalidStateVector, InvalidUpdate

__all__ = [
    "EMPTY_UPDATE",
    "Novelty",
    "adds_nothing",
    "classify",
    "decode_state_vector",
    "merge",
    "validate_update",
]

EMPTY_UPDATE = b"\x00\x00"


def decode_state_vector(state_vector: bytes) -> dict[int, int]:
    """`varUint(n) • n × (varUint client • varUint clock)` → {client: clock}."""
    try:
        decoder = Decoder(state_vector)
        count = decoder.read_var_uint()
        if count * 2 > decoder.remaining:
            raise ProtocolError("state vector claims more entries than it holds")
        clocks = {}
        for _ in range(count):
            client = decoder.read_var_uint()
            clocks[client] = decoder.read_var_uint()
        decoder.expect_end("the state vector")
    except ProtocolError as exc:
        raise InvalidStateVector(exc.reason) from exc
    return clocks


class Novelty(Enum):
    """What an update holds relative to a state vector."""

    NEW = "new"  # structs beyond the vector, or deletions of items beyond it (new or pending)
    KNOWN = "known"  # nothing beyond the vector and no deletions: a no-op
    KNOWN_WITH_DELETIONS = "known-with-deletions"  # deletes known items, which may still be live


def classify(update: bytes, state_vector: bytes) -> Novelty:
    """Compare `update` to a document at `state_vector` without applying it."""
    try:
        diff = pycrdt.get_update(update, state_vector)
    except ValueError as exc:
        raise InvalidUpdate(str(exc)) from exc
    known = decode_state_vector(state_vector)
    try:
        decoder = Decoder(diff)
        if decoder.read_var_uint() != 0:  # struct groups beyond the state vector
            return Novelty.NEW
        clients = decoder.read_var_uint()  # delete set: per client, ranges
        for _ in range(clients):
            client = decoder.read_var_uint()
            for _ in range(decoder.read_var_uint()):
                clock = decoder.read_var_uint()
                length = decoder.read_var_uint()
                if clock + length > known.get(client, 0):
                    return Novelty.NEW
    except ProtocolError as exc:
        raise InvalidUpdate(exc.reason) from exc
    return Novelty.KNOWN_WITH_DELETIONS if clients else Novelty.KNOWN


def validate_update(update: bytes) -> None:
    """Raise `InvalidUpdate` unless `update` decodes as a v1 update (cheap: no document)."""
    try:
        pycrdt.get_state(update)
    except ValueError as exc:
        raise InvalidUpdate(f"invalid update: {exc}") from exc


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
