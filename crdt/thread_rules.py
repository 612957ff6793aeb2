"""The thread wire contract, and what one update of a thread may change given who sends it.

A thread is a Yjs document with one root, `Array "messages"`, of `Map`s:

    id         string, unique in the thread               set once, by the poster
    author     "name@site": the poster                    set once: the sender's principal
    created    ms since the epoch                         set once: near the server's clock
    parent     a message id (a reply), or absent          set once
    body       Text                                       edited by the author only
    edited     ms, or absent                              set by the author only
    deleted    bool                                       set by the author only
    reactions  Map "name@site" -> emoji string            each person sets only their own key
    hidden     bool, or absent                            set by moderators only

Nothing else may change: no other root, no other key, no element removed from the array,
no value of id/author/created/parent/body/reactions replaced.

`check_update` judges an update against the document's `ThreadIndex` without touching the
document: it reads the update's structs once, places the new ones (binary searches in the
index) and applies the rules per struct and per deleted range. It raises `ThreadRefused`
(a `CrdtError`, reason safe to show) or returns the `Verdict` to commit to the index once the
document has applied the update. Cost: O(update × log(thread)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import CrdtError
from .thread_index import (
    GC,
    ID,
    MESSAGES,
    OTHER,
    TYPE_MAP,
    TYPE_TEXT,
    Placed,
    Placement,
    Slot,
    ThreadIndex,
    single_value,
    type_ref_of,
)
from .update_format import StructDetail, read_update_detail

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_REACTION_LENGTH",
    "MESSAGE_KEYS",
    "ThreadRefused",
    "Verdict",
    "Writer",
    "check_update",
]

MESSAGE_KEYS = frozenset(
    {"id", "author", "created", "parent", "body", "edited", "deleted", "reactions", "hidden"}
)
_REQUIRED = ("id", "author", "created", "body", "deleted", "reactions")
_AUTHOR_MAY_SET = frozenset({"edited", "deleted"})
MAX_ID_LENGTH = 128
MAX_REACTION_LENGTH = 32  # UTF-16 units: one emoji with modifiers, or a short name


class ThreadRefused(CrdtError):
    """An update the thread contract forbids; `kind` labels the metric."""

    def __init__(self, reason: str, kind: str = "thread_contract") -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Writer:
    """Who sends the update: `id` is "name@site"; `moderator` may set `hidden`."""

    id: str
    moderator: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """An accepted update: what `ThreadIndex.commit` takes once the document applied it."""

    placement: Placement
    deletes: Mapping[int, list[tuple[int, int]]]

    def commit(self, index: ThreadIndex) -> None:
        index.commit(self.placement, self.deletes)


def check_update(
    index: ThreadIndex, update: bytes, writer: Writer, now_ms: float, tolerance_ms: float
) -> Verdict:
    """Raise `ThreadRefused` unless `writer` may make `update` to the thread `index`
    describes; raises `InvalidUpdate` for bytes that are not an update."""
    if not writer.id:
        raise ThreadRefused("sign in to write in a thread", kind="thread_anonymous")
    summary, details = read_update_detail(update)
    placement = index.place(_new_structs(index, details))
    if placement.unresolved:
        raise ThreadRefused("the update refers to content the thread does not hold", kind="thread_unplaced")
    judge = _Judge(index, placement, writer, now_ms, tolerance_ms)
    judge.structs()
    judge.deletes(summary.deletes)
    return Verdict(placement, summary.deletes)


def _new_structs(index: ThreadIndex, details: Sequence[StructDetail]) -> list[StructDetail]:
    """The structs the document does not hold yet. A client's new structs continue its
    clocks without a gap: one that follows clocks the thread never got (an earlier update of
    the same client was refused) is refused too, so it can never wait as pending."""
    fresh = []
    expected: dict[int, int] = {}
    for detail in details:
        if detail.kind == "skip":
            continue
        start, end = detail.clock, detail.clock + detail.length
        if index.covers(detail.client, start, end):
            continue
        if detail.kind == "gc":
            raise ThreadRefused("garbage-collected structs have no place in a thread", kind="thread_shape")
        if start > expected.get(detail.client, index.end(detail.client)):
            raise ThreadRefused(
                "the update follows changes the thread never got (an earlier one was refused)",
                kind="thread_gap",
            )
        expected[detail.client] = max(expected.get(detail.client, 0), end)
        fresh.append(detail)
    return fresh


class _Judge:
    """The rules, applied to one placement."""

    def __init__(
        self, index: ThreadIndex, placement: Placement, writer: Writer, now_ms: float, tolerance_ms: float
    ) -> None:
        self.index = index
        self.placement = placement
        self.writer = writer
        self.now_ms = now_ms
        self.tolerance_ms = tolerance_ms
        self.new_messages: dict[ID, dict[str, list[Placed]]] = {}
        self.written: set[Slot] = set()  # map slots this update writes a new value in
        self.new_ids: set[Any] = set()

    # -- structs -------------------------------------------------------------------------

    def structs(self) -> None:
        # Messages first: their keys may come before them in the update (other client ids).
        for placed in self.placement.placed:
            if placed.slot == MESSAGES:
                if placed.type_ref != TYPE_MAP:
                    raise ThreadRefused("the messages array holds only message maps", kind="thread_shape")
                self.new_messages[placed.id] = {}
        for placed in self.placement.placed:
            slot = placed.slot
            if placed.right_slot is not None and placed.right_slot != slot:
                raise ThreadRefused("an item placed between two different places", kind="thread_shape")
            if slot == MESSAGES:
                continue
            kind = slot[0]
            if kind == "key":
                self._key(placed, slot[1], slot[2])
            elif kind == "body":
                self._body(placed, slot[1])
            elif kind == "reaction":
                self._reaction(placed, slot[1], slot[2])
            elif slot == GC:
                raise ThreadRefused("the update writes next to deleted content", kind="thread_shape")
            else:
                assert slot == OTHER
                raise ThreadRefused('only the "messages" array of a thread may change', kind="thread_shape")
        new_ids = [_id_of(keys) for keys in self.new_messages.values()]
        if len(set(new_ids)) != len(new_ids):
            raise ThreadRefused("a message id is unique in its thread", kind="thread_duplicate")
        self.new_ids = set(new_ids)
        for message, keys in self.new_messages.items():
            self._new_message(message, keys)

    def _key(self, placed: Placed, message: ID, key: str) -> None:
        if key not in MESSAGE_KEYS:
            raise ThreadRefused(f"a message has no key {key[:40]!r}", kind="thread_shape")
        self.written.add(placed.slot)
        if key == "hidden" and not self.writer.moderator:
            raise ThreadRefused("only moderators hide messages", kind="thread_not_moderator")
        new = self.new_messages.get(message)
        if new is not None:
            new.setdefault(key, []).append(placed)
            return
        if message not in self.index.messages:
            raise ThreadRefused("not a message of this thread", kind="thread_shape")
        if key in _AUTHOR_MAY_SET:
            if self.index.authors.get(message) != self.writer.id:
                raise ThreadRefused(f"only the author of a message sets {key!r}", kind="thread_not_author")
        elif key != "hidden":
            raise ThreadRefused(f"{key!r} of a message never changes", kind="thread_immutable")
        if placed.detail.kind == "content":
            _check_value(key, placed.detail)

    def _body(self, placed: Placed, message: ID) -> None:
        if message not in self.new_messages and self.index.authors.get(message) != self.writer.id:
            raise ThreadRefused("only the author of a message edits its body", kind="thread_not_author")
        if placed.type_ref != -1:
            raise ThreadRefused("a message body holds text, not nested types", kind="thread_shape")

    def _reaction(self, placed: Placed, message: ID, person: str) -> None:
        if person != self.writer.id:
            raise ThreadRefused("a person sets only their own reaction", kind="thread_not_yours")
        self.written.add(placed.slot)
        if placed.detail.kind == "content":
            ok, value = single_value(placed.detail)
            if not (ok and isinstance(value, str) and 0 < _utf16_length(value) <= MAX_REACTION_LENGTH):
                raise ThreadRefused(
                    f"a reaction is a string of at most {MAX_REACTION_LENGTH} characters", kind="thread_value"
                )

    def _new_message(self, message: ID, keys: dict[str, list[Placed]]) -> None:
        values: dict[str, StructDetail] = {}
        for key, items in keys.items():
            live = [p.detail for p in items if p.detail.kind == "content"]
            if len(live) != 1:
                raise ThreadRefused(f"a new message sets {key!r} once", kind="thread_shape")
            values[key] = live[0]
        missing = [key for key in _REQUIRED if key not in values]
        if missing:
            raise ThreadRefused(f"a new message needs {', '.join(missing)}", kind="thread_shape")
        for key, detail in values.items():
            _check_value(key, detail)
        author = single_value(values["author"])[1]
        if author != self.writer.id:
            raise ThreadRefused("a message is posted by its sender only", kind="thread_not_author")
        created = _number(values["created"])
        if created is None or abs(created - self.now_ms) > self.tolerance_ms:
            raise ThreadRefused("created is not near the server's clock", kind="thread_clock")
        message_id = single_value(values["id"])[1]
        if message_id in self.index.ids:
            raise ThreadRefused("a message id is unique in its thread", kind="thread_duplicate")
        if "parent" in values:
            parent = single_value(values["parent"])[1]
            if parent == message_id or (parent not in self.index.ids and parent not in self.new_ids):
                raise ThreadRefused("parent names no other message of this thread", kind="thread_value")

    # -- deletions -----------------------------------------------------------------------

    def deletes(self, deletes: Mapping[int, list[tuple[int, int]]]) -> None:
        """A sync step's delete set repeats every deletion the sender knows: only what the
        document has not deleted yet is judged."""
        for client, ranges in deletes.items():
            for start, end in ranges:
                for a, b in self.index.not_yet_deleted(client, start, end):
                    for slot in self._slots_in(client, a, b):
                        self._deletion(slot)

    def _slots_in(self, client: int, start: int, end: int) -> list[Slot]:
        slots = [slot for _, _, slot in self.placement.overlapping(client, start, end)]
        slots += [slot for _, _, slot in self.index.overlapping(client, start, end)]
        return slots

    def _deletion(self, slot: Slot) -> None:
        kind = slot[0]
        if slot == MESSAGES:
            raise ThreadRefused("messages are never removed (set deleted instead)", kind="thread_removal")
        if kind == "key":
            # Setting a key replaces (deletes) its previous value: allowed with a new value
            # this update writes, which was judged as a struct.
            if slot not in self.written:
                raise ThreadRefused(f"{slot[2]!r} of a message is never removed", kind="thread_removal")
        elif kind == "body":
            if slot[1] not in self.new_messages and self.index.authors.get(slot[1]) != self.writer.id:
                raise ThreadRefused("only the author of a message edits its body", kind="thread_not_author")
        elif kind == "reaction":
            if slot[2] != self.writer.id:
                raise ThreadRefused("a person removes only their own reaction", kind="thread_not_yours")
        elif slot != GC:
            raise ThreadRefused('only the "messages" array of a thread may change', kind="thread_shape")


def _check_value(key: str, detail: StructDetail) -> None:
    """The type of one message value (a struct with content)."""
    ok, value = single_value(detail)
    type_ref = -1 if ok else type_ref_of(detail)
    if key == "body":
        good = type_ref == TYPE_TEXT
    elif key == "reactions":
        good = type_ref == TYPE_MAP
    elif key in ("id", "parent", "author"):
        good = ok and isinstance(value, str) and 0 < len(value) <= (300 if key == "author" else MAX_ID_LENGTH)
    elif key in ("created", "edited"):
        good = ok and _number(detail) is not None
    else:  # deleted, hidden
        good = ok and isinstance(value, bool)
    if not good:
        raise ThreadRefused(f"{key!r} of a message is {_EXPECTED[key]}", kind="thread_value")


_EXPECTED = {
    "id": "a non-empty string", "parent": "a message id", "author": '"name@site"',
    "created": "a number (ms)", "edited": "a number (ms)", "deleted": "true or false",
    "hidden": "true or false", "body": "a Text", "reactions": "a Map",
}  # fmt: skip


def _number(detail: StructDetail) -> float | None:
    ok, value = single_value(detail)
    if ok and isinstance(value, tuple) and len(value) == 2 and value[0] == "bigint":
        value = float(value[1])
    if ok and isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _id_of(keys: dict[str, list[Placed]]) -> Any:
    items = [p.detail for p in keys.get("id", []) if p.detail.kind == "content"]
    return single_value(items[0])[1] if len(items) == 1 else None


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
