"""A strict reader of Yjs v1 updates, for bytes no one has checked yet.

It walks every struct and the delete set without a document and either returns a compact
`UpdateSummary` or raises `InvalidUpdate` with a short reason that is safe to send to a peer
(state vectors: `state_vectors.read_state_vector`). It runs on every client update, so the
walk is one pass over the bytes with the common cases inlined (a keystroke costs a few microseconds, see
benchmarks/update_reader.py); every count is checked against the bytes left before it is
looped over, so the work is linear in the update's size whatever it claims.

What it refuses, and why (each rule keeps a class of input away from Yrs, pycrdt's core, or
from the Yjs clients the server relays to; "Yrs" = yrs 0.28 as shipped in pycrdt 0.14.13):

- Clocks. Yrs keeps clocks as u32 and silently wraps wider varints (2^32 reads as 0), and its
  out-of-order integration computes `local_clock as i32 - clock as i32`: a struct at clock
  2^31+1 is integrated at the wrong place and moves the client's state vector to 2^31+2, and a
  block ending at 2^31 breaks the state vector of the client's next edit. So every struct and
  delete-set range must end at or before `MAX_CLOCK_END` (2^31 - 1) and every referenced ID
  (origin, right origin, parent) must lie below it. No honest client gets near: that is two
  billion insertions under one client id.
- Client ids above 2^53 - 1 (lib0 numbers are JavaScript numbers).
- Counts larger than the bytes left could hold, before any loop (Yrs pre-allocates by count:
  a lying count costs it gigabytes of address space or aborts the process).
- Any (lib0 `writeAny`) values nested deeper than `MAX_ANY_DEPTH`: Yrs decodes them
  recursively with no limit, so deep nesting overflows the native stack.
- Encodings Yjs and Yrs read differently, so a peer would see another document than the
  server: info bytes other than exactly GC (0x00) and Skip (0x0A) for those structs, content
  refs outside 1-9 or with bit 0x10 (Yrs masks 4 bits, Yjs 5), parent-info values other than
  0/1, JSON content (ref 2: Yrs reads one element more than the count says), type refs other
  than the seven Yjs knows, and XmlHook among those (Yjs reads a hook name, Yrs does not),
  two struct groups or two delete-set entries for one client (Yrs merges, Yjs keeps the
  last), unsorted or overlapping delete ranges (Yrs assumes them sorted), zero-length
  structs (Yrs drops them, Yjs integrates them).
- Invalid UTF-8 (Yrs skips the check: undefined behaviour; Yjs clients throw), JSON that
  JSON.parse would refuse (Embed, Format), unknown Any tags, trailing bytes.

String lengths are UTF-16 code units, as Yjs counts them; Any = element count; Deleted = its
length; every other content is one clock unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .errors import InvalidUpdate
from .lib0_strict import MAX_CLOCK_END, read_any, read_id, read_json, read_text, read_uint

__all__ = [
    "Run",
    "StructDetail",
    "UpdateSummary",
    "read_update",
    "read_update_detail",
]

_GC = 0
_SKIP = 10
_HAS_ORIGIN = 0x80
_HAS_RIGHT_ORIGIN = 0x40
_HAS_PARENT_SUB = 0x20
_CONTENT_DELETED = 1
_CONTENT_JSON = 2
_CONTENT_BINARY = 3
_CONTENT_STRING = 4
_CONTENT_EMBED = 5
_CONTENT_FORMAT = 6
_CONTENT_TYPE = 7
_CONTENT_ANY = 8
_CONTENT_DOC = 9
_TYPE_XML_ELEMENT = 3
# Array, Map, Text, XmlElement, XmlFragment, XmlText. XmlHook (5) is left out on purpose.
_TYPE_REFS = frozenset({0, 1, 2, 3, 4, 6})


# Clocks (start, end) of one client that an update writes, end exclusive; `content` is False
# for GC structs and Deleted content, which move the clock without carrying anything. Plain
# tuples: a NamedTuple costs 0.4 us per struct on the hot path.
Run = tuple[int, int, bool]


class UpdateSummary(NamedTuple):
    """What an update writes, per client id, in the order the update holds it.

    `structs`: the runs of clocks written (adjacent structs of the same kind are coalesced;
    Skip structs write nothing, so they show as a gap between two runs).
    `deletes`: the delete set, per client, as sorted [start, end) ranges.
    `needs`: per client, one past the highest clock the update refers to (origin, right origin
    or parent ID) that its own preceding structs of that client do not provide; such IDs must
    already be in a document for the update to integrate.
    `parents`: the IDs named as parent by structs that have neither origin (the first item
    of a nested type, a new key of a nested map); `types`: the IDs of the update's own
    shared-type items. Yrs refuses, half-way through integrating, a parent ID that names an
    item with other content (RuntimeError), so `Document` checks these before applying.
    """

    structs: dict[int, list[Run]]
    deletes: dict[int, list[tuple[int, int]]]
    needs: dict[int, int]
    parents: tuple[tuple[int, int], ...] = ()
    types: frozenset[tuple[int, int]] = frozenset()

    @property
    def is_empty(self) -> bool:
        return not self.structs and not self.deletes

    def clients(self) -> set[int]:
        """Every client id whose clocks the update writes (structs, GC or Skip-free runs)."""
        return set(self.structs)

    def ends(self) -> dict[int, int]:
        """Per client, the end of the last clock the update writes."""
        return {client: runs[-1][1] for client, runs in self.structs.items()}

    def state_vector(self) -> dict[int, int]:
        """What pycrdt's `get_state(update)` reports: per client whose structs start at clock
        0, the end of the contiguous prefix (a Skip stops it)."""
        clocks: dict[int, int] = {}
        for client, runs in self.structs.items():
            if runs[0][0] != 0:
                continue
            end = 0
            for run in runs:
                if run[0] != end:
                    break
                end = run[1]
            clocks[client] = end
        return clocks

    def deletes_beyond(self, state_vector: Mapping[int, int]) -> dict[int, list[tuple[int, int]]]:
        """The delete ranges (or parts of them) that lie beyond `state_vector` and that the
        update's own structs do not bring: deletions of clocks a document at that state does
        not hold yet (pre-deleting another user's future edits). Empty when there are none."""
        beyond: dict[int, list[tuple[int, int]]] = {}
        for client, ranges in self.deletes.items():
            known = state_vector.get(client, 0)
            runs = self.structs.get(client, [])
            for start, end in ranges:
                if end > known:
                    uncovered = _subtract(max(start, known), end, runs)
                    if uncovered:
                        beyond.setdefault(client, []).extend(uncovered)
        return beyond


def _subtract(start: int, end: int, runs: Iterable[Run]) -> list[tuple[int, int]]:
    pieces = [(start, end)]
    for run in runs:
        next_pieces = []
        for a, b in pieces:
            if run[1] <= a or run[0] >= b:
                next_pieces.append((a, b))
                continue
            if a < run[0]:
                next_pieces.append((a, run[0]))
            if run[1] < b:
                next_pieces.append((run[1], b))
        pieces = next_pieces
    return pieces


# -- the update walk ---------------------------------------------------------------------


class StructDetail(NamedTuple):
    """One struct as `read_update_detail` sees it (for content comparison, not the hot path).
    kind: "gc", "skip", "deleted" or "content". origin / right: (client, clock) or None.
    parent: a root name (str), an ID (tuple) or None when inferred from the origins. units:
    per clock unit, a value comparable across encodings (None for gc/skip/deleted)."""

    client: int
    clock: int
    length: int
    kind: str
    origin: tuple[int, int] | None
    right: tuple[int, int] | None
    parent: str | tuple[int, int] | None
    parent_sub: str | None
    units: tuple[Any, ...] | None


def read_update(update: bytes) -> UpdateSummary:
    """Validate a v1 update and summarise what it writes; raises `InvalidUpdate`."""
    try:
        return _walk(update, None)
    except IndexError:
        raise InvalidUpdate("truncated update") from None


def read_update_detail(update: bytes) -> tuple[UpdateSummary, list[StructDetail]]:
    """As `read_update`, plus every struct with its origins, parent and content units."""
    details: list[StructDetail] = []
    try:
        return _walk(update, details), details
    except IndexError:
        raise InvalidUpdate("truncated update") from None


def _walk(data: bytes, details: list[StructDetail] | None) -> UpdateSummary:
    # Hot path: one-byte varUints are read inline (`b < 0x80`), everything else via _uint.
    size = len(data)
    keep = details is not None
    structs: dict[int, list[Run]] = {}
    needs: dict[int, int] = {}
    parents: list[tuple[int, int]] = []
    types: list[tuple[int, int]] = []
    groups = data[0]
    pos = 1
    if groups >= 0x80:
        groups, pos = read_uint(data, 0)
    # A group is at least 5 bytes: struct count, client, clock, and a 2-byte struct.
    if groups * 5 > size - pos:
        raise InvalidUpdate("struct group count larger than the update")
    for _ in range(groups):
        count = data[pos]
        pos += 1
        if count >= 0x80:
            count, pos = read_uint(data, pos - 1)
        client, pos = read_uint(data, pos)
        clock = data[pos]
        pos += 1
        if clock >= 0x80:
            clock, pos = read_uint(data, pos - 1)
        if count == 0:
            raise InvalidUpdate("empty struct group")
        if count * 2 > size - pos:
            raise InvalidUpdate("struct count larger than the update")
        if client in structs:
            raise InvalidUpdate("two struct groups for one client")
        if clock >= MAX_CLOCK_END:
            raise InvalidUpdate("struct clock out of range")
        group_start = clock
        runs: list[Run] = []
        for _ in range(count):
            info = data[pos]
            pos += 1
            if info == _GC or info == _SKIP:
                length = data[pos]
                pos += 1
                if length >= 0x80:
                    length, pos = read_uint(data, pos - 1)
                content = False
                if details is not None:
                    details.append(
                        StructDetail(
                            client,
                            clock,
                            length,
                            "gc" if info == _GC else "skip",
                            None,
                            None,
                            None,
                            None,
                            None,
                        )
                    )
            else:
                ref = info & 0x1F
                if ref == 0 or ref > 9:
                    raise InvalidUpdate("unknown content ref or info bits")
                origin = right = None
                parent: str | tuple[int, int] | None = None
                parent_sub = None
                if info & _HAS_ORIGIN:
                    o_client, pos = read_uint(data, pos)
                    o_clock = data[pos]
                    pos += 1
                    if o_clock >= 0x80:
                        o_clock, pos = read_uint(data, pos - 1)
                        if o_clock >= MAX_CLOCK_END:
                            raise InvalidUpdate("referenced clock out of range")
                    origin = (o_client, o_clock)
                    if (o_client != client or not group_start <= o_clock < clock) and needs.get(
                        o_client, 0
                    ) <= o_clock:
                        needs[o_client] = o_clock + 1
                if info & _HAS_RIGHT_ORIGIN:
                    r_client, pos = read_uint(data, pos)
                    r_clock = data[pos]
                    pos += 1
                    if r_clock >= 0x80:
                        r_clock, pos = read_uint(data, pos - 1)
                        if r_clock >= MAX_CLOCK_END:
                            raise InvalidUpdate("referenced clock out of range")
                    right = (r_client, r_clock)
                    if (r_client != client or not group_start <= r_clock < clock) and needs.get(
                        r_client, 0
                    ) <= r_clock:
                        needs[r_client] = r_clock + 1
                if not info & (_HAS_ORIGIN | _HAS_RIGHT_ORIGIN):
                    parent_info = data[pos]
                    pos += 1
                    if parent_info == 1:
                        parent, pos = read_text(data, pos)
                    elif parent_info == 0:
                        p_client, p_clock, pos = read_id(data, pos)
                        parent = (p_client, p_clock)
                        parents.append(parent)
                        if (p_client != client or not group_start <= p_clock < clock) and needs.get(
                            p_client, 0
                        ) <= p_clock:
                            needs[p_client] = p_clock + 1
                    else:
                        raise InvalidUpdate("invalid parent info")
                    if info & _HAS_PARENT_SUB:
                        parent_sub, pos = read_text(data, pos)
                content = True
                units: tuple[Any, ...] | None = None
                if ref == _CONTENT_STRING:
                    n = data[pos]
                    pos += 1
                    if n >= 0x80:
                        n, pos = read_uint(data, pos - 1)
                    end = pos + n
                    if end > size:
                        raise IndexError
                    raw = data[pos:end]
                    pos = end
                    if raw.isascii():
                        length = n
                    else:
                        try:
                            length = len(raw.decode("utf-8").encode("utf-16-le")) >> 1
                        except UnicodeDecodeError:
                            raise InvalidUpdate("string is not valid UTF-8") from None
                    if keep:
                        units = _utf16_units(raw)
                elif ref == _CONTENT_DELETED:
                    length, pos = read_uint(data, pos)
                    content = False
                elif ref == _CONTENT_ANY:
                    length, pos = read_uint(data, pos)
                    if length > size - pos:
                        raise InvalidUpdate("Any count larger than the update")
                    values = []
                    for _ in range(length):
                        value, pos = read_any(data, pos, 1, keep)
                        values.append(value)
                    if keep:
                        units = tuple(values)
                elif ref == _CONTENT_TYPE:
                    type_ref = data[pos]
                    pos += 1
                    if type_ref not in _TYPE_REFS:
                        raise InvalidUpdate("unknown or unsupported type ref")
                    name = None
                    if type_ref == _TYPE_XML_ELEMENT:
                        name, pos = read_text(data, pos)
                    length = 1
                    units = (("type", type_ref, name),)
                    types.append((client, clock))
                elif ref == _CONTENT_FORMAT:
                    key, pos = read_text(data, pos)
                    value, pos = read_json(data, pos)
                    length = 1
                    units = (("format", key, value),)
                elif ref == _CONTENT_EMBED:
                    value, pos = read_json(data, pos)
                    length = 1
                    units = (("embed", value),)
                elif ref == _CONTENT_BINARY:
                    n, pos = read_uint(data, pos)
                    if pos + n > size:
                        raise IndexError
                    length = 1
                    if keep:
                        units = (("binary", bytes(data[pos : pos + n])),)
                    pos += n
                elif ref == _CONTENT_DOC:
                    guid, pos = read_text(data, pos)
                    options, pos = read_any(data, pos, 1, keep)
                    length = 1
                    if keep:
                        units = (("doc", guid, options),)
                else:  # _CONTENT_JSON
                    raise InvalidUpdate("JSON content is not accepted (Yjs and Yrs read it differently)")
                if details is not None:
                    kind = "content" if content else "deleted"
                    details.append(
                        StructDetail(client, clock, length, kind, origin, right, parent, parent_sub, units)
                    )
            if length == 0:
                raise InvalidUpdate("zero-length struct")
            end_clock = clock + length
            if end_clock > MAX_CLOCK_END:
                raise InvalidUpdate("struct clock out of range")
            if info != _SKIP:
                if runs and runs[-1][1] == clock and runs[-1][2] == content:
                    runs[-1] = (runs[-1][0], end_clock, content)
                else:
                    runs.append((clock, end_clock, content))
            clock = end_clock
        if runs:
            structs[client] = runs
    # Most updates have an empty delete set: one 0 byte.
    deletes = {} if pos == size - 1 and data[pos] == 0 else _read_delete_set(data, pos)
    if parents or types:
        return UpdateSummary(structs, deletes, needs, tuple(parents), frozenset(types))
    return UpdateSummary(structs, deletes, needs)


def _utf16_units(raw: bytes) -> tuple[bytes, ...]:
    """A string's UTF-16 code units (how Yjs counts and splits strings), as 2-byte chunks."""
    utf16 = raw.decode("utf-8").encode("utf-16-le")
    return tuple(utf16[i : i + 2] for i in range(0, len(utf16), 2))


def _read_delete_set(data: bytes, pos: int) -> dict[int, list[tuple[int, int]]]:
    size = len(data)
    deletes: dict[int, list[tuple[int, int]]] = {}
    clients, pos = read_uint(data, pos)
    if clients * 2 > size - pos:  # client + range count
        raise InvalidUpdate("delete set client count larger than the update")
    for _ in range(clients):
        client, pos = read_uint(data, pos)
        count, pos = read_uint(data, pos)
        if count * 2 > size - pos:
            raise InvalidUpdate("delete range count larger than the update")
        if client in deletes:
            raise InvalidUpdate("two delete set entries for one client")
        ranges: list[tuple[int, int]] = []
        previous_end = -1
        for _ in range(count):
            clock, pos = read_uint(data, pos)
            length, pos = read_uint(data, pos)
            end = clock + length
            if end > MAX_CLOCK_END:
                raise InvalidUpdate("delete range out of range")
            if length == 0:
                raise InvalidUpdate("empty delete range")
            if clock <= previous_end:
                raise InvalidUpdate("delete ranges not sorted")
            previous_end = end
            ranges.append((clock, end))
        deletes[client] = ranges
    if pos != size:
        raise InvalidUpdate(f"{size - pos} trailing bytes after the update")
    return deletes
