"""Awareness (presence) updates: the y-protocols encoding, with validated JSON states.

    update = varUint(count) • count × (varUint clientID • varUint clock • varString(JSON state))

A state of JSON `null` means "this client left". States are kept as the client's JSON text so
a server relays them byte for byte; they are validated here because every receiving client
runs `JSON.parse` on them and a bad one would break all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import ProtocolError
from .lib0 import Decoder, Encoder

__all__ = ["NULL_STATE", "AwarenessEntry", "decode_awareness_update", "encode_awareness_update"]

NULL_STATE = "null"


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state_json: str

    @property
    def is_removal(self) -> bool:
        return self.state_json == NULL_STATE


def decode_awareness_update(update: bytes) -> list[AwarenessEntry]:
    decoder = Decoder(update)
    count = decoder.read_var_uint()
    # Each entry takes at least three bytes; a count beyond that is a lie, not a big update.
    if count * 3 > decoder.remaining:
        raise ProtocolError(f"awareness update claims {count} entries in {decoder.remaining} bytes")
    entries = []
    for _ in range(count):
        client_id = decoder.read_var_uint()
        clock = decoder.read_var_uint()
        text = decoder.read_var_string()
        entries.append(AwarenessEntry(client_id, clock, _normalise_state(text)))
    if not decoder.at_end():
        raise ProtocolError("trailing bytes after the awareness update")
    return entries


def _normalise_state(text: str) -> str:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("awareness state is not valid JSON") from exc
    # `null` may come padded; keep every other state verbatim so relays are byte-identical.
    return NULL_STATE if value is None else text


def encode_awareness_update(entries: list[AwarenessEntry]) -> bytes:
    encoder = Encoder().write_var_uint(len(entries))
    for entry in entries:
        encoder.write_var_uint(entry.client_id).write_var_uint(entry.clock).write_var_string(entry.state_json)
    return encoder.to_bytes()
