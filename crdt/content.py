"""Same clocks, same content? Comparing an update's structs with a document's, unit by unit.

Yrs (like Yjs) skips a struct whose clocks it already has without looking at its content,
so "the state vector covers it" does not mean "the document holds it": another update may
have brought other content under the same (client, clock), or the range may have been
garbage-collected. The server acknowledges a no-op only when `holds` says the document has
every clock unit of the update with the same meaning:

- the same left origin (the struct's own, or the previous unit of the same client inside a
  struct), the same right origin, and, when both are absent, the same parent and key;
- the same content unit (a UTF-16 code unit of a string, an element of an Any array, the one
  unit of an embed, format, type, binary or sub-document);
- a unit the document holds as GC or deleted content cannot vouch for a unit the update
  carries content in. A GC unit of the update needs only the clock to be there, a Deleted
  unit the same origins (or GC in the document).

Both sides are compared in the reader's `StructDetail` form, so how each encoder split or
merged the structs does not matter.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence

from .update_format import StructDetail

__all__ = ["structs_held"]


def structs_held(
    update: Sequence[StructDetail],
    document: Sequence[StructDetail],
    covered: Mapping[int, int],
    *,
    overlap_only: bool = False,
) -> bool:
    """True when every unit of `update`'s structs below the document's state vector
    `covered` is in `document` (the document's structs of those clients) with the same
    meaning, and no unit lies beyond `covered` (with `overlap_only`, units beyond it are
    not looked at: "does the part the document already has agree?")."""
    starts: dict[int, list[int]] = {}
    by_client: dict[int, list[StructDetail]] = {}
    for struct in document:
        if struct.kind != "skip":
            starts.setdefault(struct.client, []).append(struct.clock)
            by_client.setdefault(struct.client, []).append(struct)
    for ours in update:
        if ours.kind == "skip":
            continue
        client = ours.client
        length = ours.length
        if ours.clock + length > covered.get(client, 0):
            if not overlap_only:
                return False
            length = covered.get(client, 0) - ours.clock
            if length <= 0:
                continue
        clocks = starts.get(client)
        if clocks is None:
            return False
        theirs_list = by_client[client]
        offset = 0
        while offset < length:
            clock = ours.clock + offset
            index = bisect_right(clocks, clock) - 1
            if index < 0:
                return False
            theirs = theirs_list[index]
            inner = clock - theirs.clock
            if inner >= theirs.length:
                return False
            span = min(length - offset, theirs.length - inner)
            if not _segment_held(ours, offset, theirs, inner, span, overlap_only):
                return False
            offset += span
    return True


def _segment_held(
    ours: StructDetail, offset: int, theirs: StructDetail, inner: int, span: int, overlap_only: bool
) -> bool:
    """Units [offset, offset + span) of `ours` against [inner, inner + span) of `theirs`.
    With `overlap_only` (may the update's new tail follow this?), a unit the document has
    garbage-collected or deleted agrees with any content of the same origins."""
    if ours.kind == "gc":
        return True
    if theirs.kind == "gc":
        return ours.kind == "deleted" or overlap_only
    if ours.kind == "content" and theirs.kind != "content" and not overlap_only:
        return False
    # Inside a struct a unit's left origin is the unit before it, on both sides.
    clock = ours.clock + offset
    our_origin = ours.origin if offset == 0 else (ours.client, clock - 1)
    their_origin = theirs.origin if inner == 0 else (theirs.client, clock - 1)
    if our_origin != their_origin or ours.right != theirs.right:
        return False
    if our_origin is None and ours.right is None:
        if (ours.parent, ours.parent_sub) != (theirs.parent, theirs.parent_sub):
            return False
    if ours.kind == "deleted" or theirs.kind == "deleted":
        return True
    assert ours.units is not None and theirs.units is not None
    mine, held = ours.units[offset : offset + span], theirs.units[inner : inner + span]
    return mine == held or _same(mine, held)


def _same(a: object, b: object) -> bool:
    """Equality up to a float's last digits: Yrs parses the JSON of embeds and formats with
    serde_json's fast float parser, which can be one unit in the last place off, and
    re-encodes the parsed value."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-14, abs_tol=0.0)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b
