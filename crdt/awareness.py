"""The awareness (presence) table of one room, with the y-protocols clock rules.

Rules (y-protocols awareness.js): an entry is accepted when its clock is newer than the one
known for that client, or equal with a `null` state while the client is present (a removal).
Unknown clients count as clock 0, so a fresh client's first `{}` at clock 0 is ignored.

Beyond the reference server, each accepted non-null entry records which connection owns the
client id (the last one that set its state), so when a connection goes away exactly its
clients are removed, even after a reconnect moved an id from one socket to another.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from protocol.awareness import (
    NULL_STATE,
    AwarenessEntry,
    decode_awareness_update,
    encode_awareness_update,
)

__all__ = ["AwarenessChange", "AwarenessTable"]


@dataclass(slots=True)
class AwarenessChange:
    added: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    # The bytes to relay: the sender's own update when every entry was accepted, otherwise
    # the accepted entries re-encoded (states verbatim). None when nothing was accepted.
    update: bytes | None = None

    @property
    def changed(self) -> bool:
        return self.update is not None


class AwarenessTable:
    """States by client id. The server never has a state of its own."""

    def __init__(self) -> None:
        self._states: dict[int, str] = {}
        self._clocks: dict[int, int] = {}
        self._last_seen: dict[int, float] = {}
        self._owner: dict[int, Hashable] = {}

    @property
    def states(self) -> dict[int, str]:
        """Present clients and their JSON states (read-only view by convention)."""
        return self._states

    def __len__(self) -> int:
        return len(self._states)

    def apply(self, update: bytes, owner: Hashable | None, now: float) -> AwarenessChange:
        """Apply an encoded update from `owner` (a connection, or None for a remote node).
        Raises `protocol.ProtocolError` if the update is malformed; nothing is applied then."""
        entries = decode_awareness_update(update)
        return self.apply_entries(entries, owner, now, original=update)

    def apply_entries(
        self,
        entries: list[AwarenessEntry],
        owner: Hashable | None,
        now: float,
        original: bytes | None = None,
    ) -> AwarenessChange:
        change = AwarenessChange()
        accepted: list[AwarenessEntry] = []
        for entry in entries:
            client = entry.client_id
            known_clock = self._clocks.get(client, 0)
            present = client in self._states
            if not (
                known_clock < entry.clock or (known_clock == entry.clock and entry.is_removal and present)
            ):
                continue
            accepted.append(entry)
            was_known = client in self._clocks
            self._clocks[client] = entry.clock
            self._last_seen[client] = now
            if entry.is_removal:
                self._states.pop(client, None)
                self._owner.pop(client, None)
                if was_known:
                    change.removed.append(client)
            else:
                self._states[client] = entry.state_json
                if owner is not None:
                    self._owner[client] = owner
                (change.updated if was_known else change.added).append(client)
        if accepted:
            change.update = (
                original
                if len(accepted) == len(entries) and original
                else (encode_awareness_update(accepted))
            )
        return change

    def remove_owned_by(self, owner: Hashable) -> AwarenessChange:
        """Remove every client `owner` controls (its connection closed)."""
        return self._remove([client for client, who in self._owner.items() if who == owner])

    def expire(self, now: float, timeout: float) -> AwarenessChange:
        """Remove clients that have not renewed their state for `timeout` seconds."""
        return self._remove([c for c in self._states if now - self._last_seen.get(c, now) >= timeout])

    def _remove(self, clients: list[int]) -> AwarenessChange:
        # Removal keeps the clock: receivers accept `null` at an equal clock for a present client.
        entries = []
        for client in clients:
            if self._states.pop(client, None) is not None:
                entries.append(AwarenessEntry(client, self._clocks[client], NULL_STATE))
            self._owner.pop(client, None)
        if not entries:
            return AwarenessChange()
        return AwarenessChange(
            removed=[e.client_id for e in entries], update=encode_awareness_update(entries)
        )

    def encode_all(self) -> bytes | None:
        """Every present state, for a newly joined connection; None if there are none."""
        return self.encode_clients(list(self._states))

    def encode_clients(self, clients: list[int]) -> bytes | None:
        """The present states of `clients` as one update; None if none is present."""
        entries = [AwarenessEntry(c, self._clocks[c], self._states[c]) for c in clients if c in self._states]
        return encode_awareness_update(entries) if entries else None

    def clock_of(self, client: int) -> int:
        return self._clocks.get(client, 0)

    def owners(self) -> dict[int, Hashable]:
        """Which owner last set each present client's state (read-only view by convention)."""
        return self._owner
