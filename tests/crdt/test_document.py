"""The document wrapper: new vs no-op vs pending updates, diffs, compaction."""

from __future__ import annotations

import pycrdt
import pytest

from crdt.compaction import compact
from crdt.document import Document
from crdt.errors import InvalidStateVector, InvalidUpdate
from crdt.updates import EMPTY_UPDATE, decode_state_vector


def typed_updates(*texts: str, delete: tuple[int, int] | None = None) -> list[bytes]:
    """Updates of one client typing `texts` one after the other into Y.Text "t"."""
    doc = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    updates: list[bytes] = []
    sub = doc.observe(lambda event: updates.append(event.update))
    for chunk in texts:
        text += chunk
    if delete is not None:
        del text[delete[0] : delete[0] + delete[1]]
    doc.unobserve(sub)
    return updates


def text_of(document: Document) -> str:
    return str(document.ydoc.get("t", type=pycrdt.Text))


def test_golden_hi_update_applies() -> None:
    document = Document()
    assert document.apply(bytes.fromhex("01 01 01 00 04 01 01 74 02 68 69 00"))
    assert text_of(document) == "hi"
    assert document.state_vector() == bytes.fromhex("01 01 02")


def test_reapplying_is_a_noop() -> None:
    first, second = typed_updates("hi", " there")
    document = Document()
    assert document.apply(first) and document.apply(second)
    assert not document.apply(first)
    assert not document.apply(EMPTY_UPDATE)


def test_update_with_missing_dependency_counts_as_new() -> None:
    first, second = typed_updates("hi", " there")
    document = Document()
    assert document.apply(second)  # pending: nothing integrated, but not a no-op
    assert text_of(document) == ""
    assert document.apply(first)
    assert text_of(document) == "hi there"


def test_deletion_of_unknown_items_counts_as_new() -> None:
    *inserts, deletion = typed_updates("abc", delete=(0, 1))
    document = Document()
    assert document.apply(deletion)  # deletes items this document has never seen
    for update in inserts:
        document.apply(update)
    assert text_of(document) == "bc"
    assert not document.apply(deletion)


def test_diff_against_state_vector() -> None:
    first, second = typed_updates("hi", " there")
    document = Document()
    document.apply(first)
    sv = document.state_vector()
    document.apply(second)
    other = Document()
    other.apply(first)
    other.apply(document.diff(sv))
    assert text_of(other) == "hi there"


def test_invalid_input_raises_and_changes_nothing() -> None:
    document = Document()
    document.apply(typed_updates("ok")[0])
    before = document.full_update()
    with pytest.raises(InvalidUpdate):
        document.apply(b"\x01\x02\x03")
    with pytest.raises(InvalidStateVector):
        document.diff(b"\xff")
    assert document.full_update() == before


def test_decode_state_vector() -> None:
    assert decode_state_vector(bytes.fromhex("01 01 02")) == {1: 2}
    assert decode_state_vector(b"\x00") == {}


def test_compaction_equals_the_log_and_keeps_pending_updates() -> None:
    updates = typed_updates("a", "b", "c", "d", delete=(1, 2))
    complete = Document()
    for update in updates:
        complete.apply(update)
    snapshot = compact(updates)
    restored = Document()
    restored.apply(snapshot)
    assert text_of(restored) == text_of(complete) == "ad"

    # Without the first update the rest is pending; compaction must not drop it.
    partial = compact(updates[1:])
    healed = Document()
    healed.apply(partial)
    healed.apply(updates[0])
    assert text_of(healed) == "ad"


def test_compaction_is_smaller_than_the_log() -> None:
    updates = typed_updates(*["x"] * 300, delete=(0, 290))
    assert len(compact(updates)) < sum(len(u) for u in updates) / 5
