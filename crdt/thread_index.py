"""Where every struct of a thread document sits, so an update can be judged by its own structs.

A Yjs update names the parent of an item only when the item has no neighbour (the first
element of a type, the first value of a map key); otherwise the item is placed next to its
left (or right) origin and inherits that item's parent. pycrdt cannot say which type holds a
given (client, clock), and asking Yrs for the structs around it costs in proportion to what
that client wrote since. So the thread validator keeps its own index of the document, per
client id a sorted list of runs of clocks, each with its *slot* (where in the thread contract
it sits), built once from the document when the first client update arrives and extended by
every update the room applies (whatever its origin). Placing an update's structs is then a
binary search per struct: validation costs O(update × log(thread)), never O(thread).

Slots (`m` is a message: the ID of its Map item in the array):

    MESSAGES                  an element of the root Array "messages" (a Map element is a message)
    ("key", m, key)           a value of key `key` of message m
    ("body", m)               content of message m's body Text
    ("reaction", m, person)   a value of key `person` of message m's reactions Map
    OTHER                     anywhere else: outside the contract
    GC                        garbage-collected: its place is gone (Yrs integrates what sits
                              next to it as GC too)

The index also remembers each message's author and id string (the rules need them), the
ranges the document has deleted (a sync step's delete set repeats every deletion ever made;
those already in effect are not judged again), and structs of other origins it could not
place yet (their neighbour or parent had not arrived), placed as soon as it does.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .update_format import StructDetail, read_update_detail

__all__ = [
    "GC",
    "ID",
    "MESSAGES",
    "OTHER",
    "TYPE_MAP",
    "TYPE_TEXT",
    "Placed",
    "Placement",
    "Slot",
    "ThreadIndex",
    "single_value",
    "type_ref_of",
]

ID = tuple[int, int]
Slot = tuple[Any, ...]

MESSAGES: Slot = ("messages",)
OTHER: Slot = ("other",)
GC: Slot = ("gc",)
ROOT = "messages"

# Yjs type refs (YArrayRefID = 0, YMapRefID = 1, YTextRefID = 2, ...).
TYPE_MAP = 1
TYPE_TEXT = 2
_NOT_A_TYPE = -1


def type_ref_of(detail: StructDetail) -> int:
    """The shared-type ref of a struct that creates one (Map, Text, ...), else -1."""
    units = detail.units
    if detail.kind == "content" and units and len(units) == 1:
        unit = units[0]
        # The reader's marker for type content; an Any array decodes to floats, never an int.
        if isinstance(unit, tuple) and len(unit) == 3 and unit[0] == "type" and type(unit[1]) is int:
            return unit[1]
    return _NOT_A_TYPE


def single_value(detail: StructDetail) -> tuple[bool, Any]:
    """(True, value) for a struct holding exactly one lib0 Any value (how a Map stores a
    plain value), else (False, None). Strings come back as str, numbers as float."""
    units = detail.units
    if detail.kind != "content" or units is None or len(units) != 1 or type_ref_of(detail) != _NOT_A_TYPE:
        return False, None
    value = units[0]
    if isinstance(value, bytes) or (isinstance(value, tuple) and value and value[0] in _NON_ANY_UNITS):
        return False, None  # a string's UTF-16 unit, a format, an embed, binary or sub-document
    return True, value


_NON_ANY_UNITS = frozenset({"format", "embed", "binary", "doc"})


@dataclass(frozen=True, slots=True)
class Placed:
    """One struct with its slot; `right_slot` is the slot of its right origin when it has
    both origins (None: it has one or none; MISSING: the right origin is nowhere)."""

    detail: StructDetail
    slot: Slot
    type_ref: int
    right_slot: Slot | None = None

    @property
    def id(self) -> ID:
        return (self.detail.client, self.detail.clock)


MISSING: Slot = ("missing",)


@dataclass(slots=True)
class Placement:
    """Where the structs of one update go: `placed` in the order they were placed, and the
    structs whose neighbour or parent is neither in the update nor in the index."""

    placed: list[Placed] = field(default_factory=list)
    unresolved: list[StructDetail] = field(default_factory=list)
    _runs: dict[int, _Runs] = field(default_factory=dict)

    def find(self, client: int, clock: int) -> tuple[int, Slot, int] | None:
        runs = self._runs.get(client)
        return None if runs is None else runs.find(clock)

    def overlapping(self, client: int, start: int, end: int) -> Iterator[tuple[int, int, Slot]]:
        runs = self._runs.get(client)
        return iter(()) if runs is None else runs.overlapping(start, end)


class _Runs:
    """The runs of one client: sorted by start, never overlapping, in parallel arrays (clocks
    as machine integers: a tuple and int objects per run would cost ~150 bytes more each).
    Adjacent runs of one slot and no type merge."""

    __slots__ = ("ends", "slots", "starts", "types")

    def __init__(self) -> None:
        self.starts = array("q")
        self.ends = array("q")
        self.slots: list[Slot] = []
        self.types = array("b")

    def find(self, clock: int) -> tuple[int, Slot, int] | None:
        """(start of the run, slot, type ref) of the run holding `clock`, or None."""
        i = bisect_right(self.starts, clock) - 1
        if i < 0 or clock >= self.ends[i]:
            return None
        return self.starts[i], self.slots[i], self.types[i]

    def covers(self, start: int, end: int) -> bool:
        while start < end:
            i = bisect_right(self.starts, start) - 1
            if i < 0 or self.ends[i] <= start:
                return False
            start = self.ends[i]
        return True

    def overlapping(self, start: int, end: int) -> Iterator[tuple[int, int, Slot]]:
        """(start, end, slot) of the parts of runs within [start, end)."""
        i = max(bisect_right(self.starts, start) - 1, 0)
        starts, ends = self.starts, self.ends
        while i < len(starts):
            s, e = starts[i], ends[i]
            if s >= end:
                return
            if e > start:
                yield max(s, start), min(e, end), self.slots[i]
            i += 1

    def add(self, start: int, end: int, slot: Slot, type_ref: int) -> bool:
        """Record [start, end) except the clocks already recorded; False if all were."""
        if not self.ends or start >= self.ends[-1]:  # the usual case: a client's next edit
            self._insert(len(self.starts), start, end, slot, type_ref)
            return True
        pieces = []
        for s, e, _ in self.overlapping(start, end):
            if s > start:
                pieces.append((start, s))
            start = e
        if start < end:
            pieces.append((start, end))
        for a, b in pieces:
            self._insert(bisect_right(self.starts, a), a, b, slot, type_ref)
        return bool(pieces)

    def _insert(self, i: int, start: int, end: int, slot: Slot, type_ref: int) -> None:
        if i and type_ref == _NOT_A_TYPE and self.ends[i - 1] == start:
            if self.slots[i - 1] == slot and self.types[i - 1] == _NOT_A_TYPE:
                self.ends[i - 1] = end
                return
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        self.slots.insert(i, slot)
        self.types.insert(i, type_ref)


class ThreadIndex:
    """The index of one thread document (see the module docstring). Not thread-safe; the
    room that owns the document calls it from one event loop."""

    __slots__ = ("_deleted", "_ends", "_runs", "_waiting", "authors", "ids", "messages")

    messages: dict[ID, ID]  # each message's ID, to itself: slots share that one tuple

    def __init__(self) -> None:
        self._runs: dict[int, _Runs] = {}
        self._ends: dict[int, int] = {}  # per client, one past its highest clock seen
        self._deleted: dict[int, list[tuple[int, int]]] = {}  # sorted, merged
        # Structs of applied updates still waiting for a neighbour or parent, by that ID's client.
        self._waiting: dict[int, dict[int, list[StructDetail]]] = {}
        self.messages = {}
        self.authors: dict[ID, str] = {}
        self.ids: dict[str, ID] = {}

    @classmethod
    def of_document(cls, full_update: bytes) -> ThreadIndex:
        """The index of a document, from its whole state (`Document.full_update()`): the one
        pass that costs O(thread), once per room."""
        summary, details = read_update_detail(full_update)
        index = cls()
        index.record(details, summary.deletes)
        return index

    # -- questions -----------------------------------------------------------------------

    def find(self, client: int, clock: int) -> tuple[int, Slot, int] | None:
        runs = self._runs.get(client)
        return None if runs is None else runs.find(clock)

    def covers(self, client: int, start: int, end: int) -> bool:
        runs = self._runs.get(client)
        return runs is not None and runs.covers(start, end)

    def end(self, client: int) -> int:
        """One past the highest clock of `client` this index has seen (0: none)."""
        return self._ends.get(client, 0)

    def overlapping(self, client: int, start: int, end: int) -> Iterator[tuple[int, int, Slot]]:
        runs = self._runs.get(client)
        return iter(()) if runs is None else runs.overlapping(start, end)

    def not_yet_deleted(self, client: int, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) the document has not deleted yet."""
        ranges = self._deleted.get(client)
        if not ranges:
            return [(start, end)]
        pieces = []
        i = max(bisect_right(ranges, (start, start)) - 1, 0)
        while i < len(ranges) and start < end:
            s, e = ranges[i]
            if s >= end:
                break
            if e > start:
                if s > start:
                    pieces.append((start, s))
                start = max(start, e)
            i += 1
        if start < end:
            pieces.append((start, end))
        return pieces

    @property
    def waiting(self) -> int:
        return sum(len(found) for by_clock in self._waiting.values() for found in by_clock.values())

    # -- placing -------------------------------------------------------------------------

    def place(self, details: Iterable[StructDetail]) -> Placement:
        """The slots of an update's structs, against the update itself and this index (which
        is not changed). Structs may refer to structs later in the update (other clients)."""
        placement = Placement()
        waiting: dict[int, dict[int, list[StructDetail]]] = {}
        for detail in details:
            if detail.kind != "skip":
                self._place_one(detail, placement, waiting)
        placement.unresolved = [d for by_clock in waiting.values() for ds in by_clock.values() for d in ds]
        return placement

    def _place_one(
        self, detail: StructDetail, placement: Placement, waiting: dict[int, dict[int, list[StructDetail]]]
    ) -> None:
        work = [detail]
        while work:
            current = work.pop()
            needed, slot = self._resolve(current, placement)
            if slot is None:
                assert needed is not None
                waiting.setdefault(needed[0], {}).setdefault(needed[1], []).append(current)
                continue
            right_slot = None
            if current.origin is not None and current.right is not None:
                found = self._lookup(current.right, placement)
                right_slot = MISSING if found is None else found[1]
            type_ref = type_ref_of(current)
            placement.placed.append(Placed(current, slot, type_ref, right_slot))
            start, end = current.clock, current.clock + current.length
            placement._runs.setdefault(current.client, _Runs()).add(start, end, slot, type_ref)
            work.extend(_wake(waiting, current.client, start, end))

    def _lookup(self, id_: ID, placement: Placement | None) -> tuple[int, Slot, int] | None:
        found = None if placement is None else placement.find(*id_)
        return found if found is not None else self.find(*id_)

    def _resolve(self, detail: StructDetail, placement: Placement | None) -> tuple[ID | None, Slot | None]:
        """(None, slot), or (the ID it waits for, None)."""
        if detail.kind == "gc":
            return None, GC
        parent = detail.parent
        if isinstance(parent, str):
            return None, (MESSAGES if parent == ROOT and detail.parent_sub is None else OTHER)
        if parent is not None:
            found = self._lookup(parent, placement)
            if found is None:
                return parent, None
            start, slot, type_ref = found
            parent_type = type_ref if start == parent[1] else _NOT_A_TYPE
            return None, _child_slot(slot, parent_type, parent, detail.parent_sub)
        neighbour = detail.origin if detail.origin is not None else detail.right
        if neighbour is None:
            return None, OTHER
        found = self._lookup(neighbour, placement)
        if found is None:
            return neighbour, None
        return None, found[1]

    # -- recording what the document applied ---------------------------------------------

    def record(self, details: Sequence[StructDetail], deletes: Mapping[int, list[tuple[int, int]]]) -> None:
        """Take in an update the document applied (any origin): its structs go straight into
        the index; those whose neighbour or parent is not there yet wait for it."""
        self._take([d for d in details if d.kind != "skip"])
        self._take_deletes(deletes)

    def commit(self, placement: Placement, deletes: Mapping[int, list[tuple[int, int]]]) -> None:
        """Take in a placement (from `place`) of an update the document applied."""
        woken: list[StructDetail] = []
        for placed in placement.placed:
            woken.extend(self._add(placed.detail, placed.slot, placed.type_ref))
        self._take(woken + placement.unresolved)
        self._take_deletes(deletes)

    def _take(self, work: list[StructDetail]) -> None:
        while work:
            detail = work.pop()
            needed, slot = self._resolve(detail, None)
            if slot is None:
                assert needed is not None
                end = detail.clock + detail.length
                if self._ends.get(detail.client, 0) < end:
                    self._ends[detail.client] = end
                self._waiting.setdefault(needed[0], {}).setdefault(needed[1], []).append(detail)
            else:
                work.extend(self._add(detail, slot, type_ref_of(detail)))

    def _take_deletes(self, deletes: Mapping[int, list[tuple[int, int]]]) -> None:
        for client, ranges in deletes.items():
            for start, end in ranges:
                self._mark_deleted(client, start, end)

    def _add(self, detail: StructDetail, slot: Slot, type_ref: int) -> list[StructDetail]:
        """Record one placed struct; returns the waiting structs it lets be placed."""
        start, end = detail.clock, detail.clock + detail.length
        runs = self._runs.get(detail.client)
        if runs is None:
            runs = self._runs[detail.client] = _Runs()
        if len(slot) == 3:  # ("key" | "reaction", message, key): share the message ID and key
            slot = (slot[0], self.messages.get(slot[1], slot[1]), sys.intern(slot[2]))
        elif len(slot) == 2:  # ("body", message)
            slot = (slot[0], self.messages.get(slot[1], slot[1]))
        if not runs.add(start, end, slot, type_ref):
            return []  # the index had these clocks already
        if self._ends.get(detail.client, 0) < end:
            self._ends[detail.client] = end
        if slot == GC:
            self._mark_deleted(detail.client, start, end)
        elif slot == MESSAGES:
            if type_ref == TYPE_MAP:
                message = (detail.client, detail.clock)
                self.messages[message] = message
        elif slot[0] == "key" and slot[2] in ("author", "id"):
            ok, value = single_value(detail)
            if ok and isinstance(value, str):
                if slot[2] == "author":
                    self.authors.setdefault(slot[1], value)
                else:
                    self.ids.setdefault(value, slot[1])
        return _wake(self._waiting, detail.client, start, end) if self._waiting else []

    def _mark_deleted(self, client: int, start: int, end: int) -> None:
        ranges = self._deleted.setdefault(client, [])
        if not ranges or start > ranges[-1][1]:
            ranges.append((start, end))
            return
        i = bisect_right(ranges, (start, start))
        if i and ranges[i - 1][1] >= start:
            i -= 1
        j = i
        while j < len(ranges) and ranges[j][0] <= end:
            start, end = min(start, ranges[j][0]), max(end, ranges[j][1])
            j += 1
        ranges[i:j] = [(start, end)]


def _child_slot(parent_slot: Slot, parent_type: int, parent: ID, key: str | None) -> Slot:
    """The slot of an item whose parent is the shared type created by the item `parent`."""
    kind = parent_slot[0]
    if parent_slot == MESSAGES and parent_type == TYPE_MAP and key is not None:
        return ("key", parent, key)
    if kind == "key" and parent_slot[2] == "body" and parent_type == TYPE_TEXT and key is None:
        return ("body", parent_slot[1])
    if kind == "key" and parent_slot[2] == "reactions" and parent_type == TYPE_MAP and key is not None:
        return ("reaction", parent_slot[1], key)
    return GC if parent_slot == GC else OTHER


def _wake(
    waiting: dict[int, dict[int, list[StructDetail]]], client: int, start: int, end: int
) -> list[StructDetail]:
    by_clock = waiting.get(client)
    if not by_clock:
        return []
    woken: list[StructDetail] = []
    clocks = range(start, end) if end - start <= len(by_clock) else [c for c in by_clock if start <= c < end]
    for clock in clocks:
        found = by_clock.pop(clock, None)
        if found:
            woken.extend(found)
    if not by_clock:
        del waiting[client]
    return woken
