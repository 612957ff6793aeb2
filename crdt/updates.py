"""Reading Yjs v1 updates and state vectors without a document: what an update adds.

pycrdt's `Doc.get_update()` leaves out updates whose dependencies are still missing
("pending"), and applying such an update emits no event. So "no event fired" does not mean
"nothing new": this module tells a true no-op from a pending update by diffing the update
against the document's state vector.
"""

from __future__ import annotations

import pycrdt

from protocol.errors import ProtocolError
from protocol.lib0 import Decoder

from .errors import InvalidStateVector, InvalidUpdate

__all__ = ["EMPTY_UPDATE", "adds_nothing", "decode_state_vector", "merge"]

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


def adds_nothing(update: bytes, state_vector: bytes) -> bool:
    """True when a document at `state_vector` (with no pending updates) already holds all
    of `update`: every struct is below the vector and every deleted range is of known items.

    A document's own deletions of known items would have fired an event, so an update that
    fired none and passes this check changed nothing; one that fails it went pending.
    """
    try:
        diff = pycrdt.get_update(update, state_vector)
    except ValueError as exc:
        raise InvalidUpdate(str(exc)) from exc
    known = decode_state_vector(state_vector)
    try:
        decoder = Decoder(diff)
        if decoder.read_var_uint() != 0:  # struct groups beyond the state vector
            return False
        for _ in range(decoder.read_var_uint()):  # delete set: per client, ranges
            client = decoder.read_var_uint()
            for _ in range(decoder.read_var_uint()):
                clock = decoder.read_var_uint()
                length = decoder.read_var_uint()
                if clock + length > known.get(client, 0):
                    return False
    except ProtocolError as exc:
        raise InvalidUpdate(exc.reason) from exc
    return True


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
