"""Sequence numbers on the backplane: numbering what this node sends, spotting gaps in what
it receives. Pure bookkeeping, shared by every backplane that can lose messages."""

from __future__ import annotations

import secrets

from protocol.backplane import BackplaneKind, BackplaneMessage

__all__ = ["InboundSequences", "OutboundSequences", "incarnation"]


def incarnation(node_id: str) -> str:
    """A node's name on the backplane: its id plus a boot id, so a restarted node's
    sequences start afresh without looking like a rewind of the old ones."""
    return f"{node_id}/{secrets.token_hex(4)}"


class OutboundSequences:
    """Numbers this node's messages per document and remembers what is due a heartbeat.

    Counters are kept for the life of the process, also after a room unloads: restarting a
    document's count at 1 would hide gaps from nodes that kept the room open.
    """

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self._seq: dict[str, int] = {}
        self._durable: dict[str, int] = {}
        self._heartbeat_due: set[str] = set()

    def next(self, name: str, kind: BackplaneKind, payload: bytes, target: str = "") -> BackplaneMessage:
        seq = self._seq.get(name, 0) + 1
        self._seq[name] = seq
        self._heartbeat_due.add(name)
        return BackplaneMessage(self.origin, seq, self._durable.get(name, 0), kind, payload, target)

    def mark_durable(self, name: str, seq: int) -> None:
        if seq > self._durable.get(name, 0):
            self._durable[name] = seq
            self._heartbeat_due.add(name)

    def heartbeats(self, subscribed: set[str]) -> list[tuple[str, BackplaneMessage]]:
        """One heartbeat per document that changed since the last round (and is still open):
        it repeats the last seq, so a receiver notices a dropped final message."""
        due, self._heartbeat_due = self._heartbeat_due, set()
        return [
            (name, BackplaneMessage(self.origin, self._seq.get(name, 0), self._durable.get(name, 0),
                                    BackplaneKind.HEARTBEAT))
            for name in due
            if name in subscribed
        ]  # fmt: skip


class InboundSequences:
    """The last seq seen from each origin on one document."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def observe(self, message: BackplaneMessage) -> bool:
        """Record `message`; True if messages from its origin were missed before it."""
        last = self._last.get(message.origin)
        if last is None:
            # First word from this origin since we subscribed: earlier messages predate the
            # subscription and reach us through the load and the catch-up sync instead.
            self._last[message.origin] = message.seq
            return False
        if message.seq > last:
            self._last[message.origin] = message.seq
        expected = last if message.kind == BackplaneKind.HEARTBEAT else last + 1
        return message.seq > expected
