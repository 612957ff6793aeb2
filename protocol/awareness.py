"""Awareness (presence) updates: the y-protocols encoding, with validated JSON states.

    update = varUint(count) • count × (varUint clientID • varUint clock • varString(JSON state))

A state of JSON `null` means "this client left". States are kept as the client's JSON text so
a server relays them byte for byte; they are validated because every receiving client runs
`JSON.parse` on them and a bad one would break all of them.

Two ways to decode. `decode_awareness_update` validates everything at once (clients, tools).
A server uses `decode_raw_awareness_update`, which checks the claimed count and the state
sizes against its limits before it decodes anything, and leaves the JSON check to
`validate_entry`, for the entries it will actually keep: most entries a server receives are
clients re-sending states the server itself sent them (y-websocket and Hocuspocus providers
re-send every awareness change they apply), which are stale and need no parsing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import ProtocolError
from .lib0 import Decoder, Encoder

__all__ = [
    "MAX_CLOCK",
    "NULL_STATE",
    "AwarenessEntry",
    "AwarenessLimitExceeded",
    "RawAwarenessEntry",
    "decode_awareness_update",
    "decode_raw_awareness_update",
    "encode_awareness_update",
    "validate_entry",
]

NULL_STATE = "null"
_JSON_SPACE = b" \t\n\r"
# y-protocols answers a clock of 2^53 - 1 with 2^53 (in JavaScript 2^53 + 1 == 2^53, so it
# stays there). Refusing it would lock that client out; larger clocks are malformed.
MAX_CLOCK = 1 << 53


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state_json: str

    @property
    def is_removal(self) -> bool:
        return self.state_json == NULL_STATE


@dataclass(frozen=True, slots=True)
class RawAwarenessEntry:
    """An entry whose state has not been checked yet (see `validate_entry`)."""

    client_id: int
    clock: int
    state: bytes

    @property
    def is_removal(self) -> bool:
        # The only JSON text that parses to null is `null`, with optional JSON white space.
        return self.state.strip(_JSON_SPACE) == b"null"


class AwarenessLimitExceeded(ProtocolError):
    """A well-formed update beyond a receiver's limit; `what` is "entries" or "state_size".
    Not a reason to close: a receiver drops the update (and counts it)."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(reason)
        self.what = what


def decode_raw_awareness_update(
    update: bytes, *, max_entries: int | None = None, max_state_bytes: int | None = None
) -> list[RawAwarenessEntry]:
    """Decode the structure of `update`. Raises `AwarenessLimitExceeded` for a count above
    `max_entries` (before reading any entry) or a state above `max_state_bytes`, and
    `ProtocolError` for bytes that are malformed whatever the limits."""
    decoder = Decoder(update)
    count = decoder.read_var_uint()
    # Each entry takes at least three bytes; a count beyond that is a lie, not a big update.
    if count * 3 > decoder.remaining:
        raise ProtocolError(f"awareness update claims {count} entries in {decoder.remaining} bytes")
    if max_entries is not None and count > max_entries:
        raise AwarenessLimitExceeded(
            "entries", f"awareness update with {count} entries (limit {max_entries})"
        )
    entries = []
    for _ in range(count):
        client_id = decoder.read_var_uint()
        clock = decoder.read_var_uint(MAX_CLOCK)
        length = decoder.read_var_uint()
        if max_state_bytes is not None and length > max_state_bytes:
            raise AwarenessLimitExceeded(
                "state_size", f"awareness state of {length} bytes (limit {max_state_bytes})"
            )
        entries.append(RawAwarenessEntry(client_id, clock, decoder.read_bytes(length)))
    if not decoder.at_end():
        raise ProtocolError("trailing bytes after the awareness update")
    return entries


def validate_entry(entry: RawAwarenessEntry) -> AwarenessEntry:
    """Check the state is UTF-8 JSON; raises `ProtocolError` otherwise."""
    if entry.is_removal:
        return AwarenessEntry(entry.client_id, entry.clock, NULL_STATE)
    try:
        text = entry.state.decode("utf-8")
        json.loads(text)
    except UnicodeDecodeError as exc:
        raise ProtocolError("awareness state is not valid UTF-8") from exc
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("awareness state is not valid JSON") from exc
    # Kept verbatim (not re-serialised), so relays are byte-identical.
    return AwarenessEntry(entry.client_id, entry.clock, text)


def decode_awareness_update(update: bytes) -> list[AwarenessEntry]:
    """Every entry of `update`, validated; raises `ProtocolError` if anything is malformed."""
    return [validate_entry(entry) for entry in decode_raw_awareness_update(update)]


def encode_awareness_update(entries: list[AwarenessEntry]) -> bytes:
    encoder = Encoder().write_var_uint(len(entries))
    for entry in entries:
        encoder.write_var_uint(entry.client_id).write_var_uint(entry.clock, MAX_CLOCK)
        encoder.write_var_string(entry.state_json)
    return encoder.to_bytes()
