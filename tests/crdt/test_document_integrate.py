"""Document.integrate / holds / deletes_beyond / diff with hand-made and real updates."""

from __future__ import annotations

from typing import Any

import pycrdt
import pytest

from crdt.document import Document, Outcome
from crdt.errors import InvalidStateVector, InvalidUpdate
from crdt.lib0_strict import MAX_CLOCK_END
from crdt.state_vectors import read_state_vector
from crdt.updates import Novelty, classify

from .craft import any_array, gc, group, item, string, update, v


def typed(client: int, *chunks: str) -> list[bytes]:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client)
    text = doc.get("t", type=pycrdt.Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for chunk in chunks:
        text += chunk
    return updates


def text_of(document: Document) -> str:
    return str(document.ydoc.get("t", type=pycrdt.Text))


def test_the_clock_2_32_attack_is_refused_and_the_victims_edits_count() -> None:
    """Issue 7 point 1: one ~20-byte update at clock 2^32 for the victim's client id."""
    victim = typed(77, "a", "b", "c")
    document = Document()
    attack = update(group(77, 2**32, string("x")))
    assert len(attack) < 20
    with pytest.raises(InvalidUpdate):
        document.integrate(attack)
    with pytest.raises(InvalidUpdate):
        document.integrate(update(group(77, 2**31 + 1, string("x"))))
    assert [document.integrate(u).outcome for u in victim] == [Outcome.NEW] * 3
    assert text_of(document) == "abc"


def test_pending_update_sent_again_is_not_stored_again() -> None:
    first, second = typed(5, "hi", " there")
    document = Document()
    result = document.integrate(second)
    assert result.outcome is Outcome.PENDING and result.worth_storing
    again = document.integrate(second)
    assert again.outcome is Outcome.PENDING and again.repeated and not again.worth_storing
    assert not document.apply(second)
    assert document.integrate(first).outcome is Outcome.NEW
    assert text_of(document) == "hi there"
    assert document.integrate(second).outcome is Outcome.KNOWN


def test_out_of_order_update_without_missing_dependencies_is_pending_once() -> None:
    # Yrs integrates a struct after a gap when its origins are there (behind a Skip), but the
    # state vector does not move: it must not look new every time.
    gap = update(group(6, 5, string("late")))
    document = Document()
    assert document.integrate(gap).outcome is Outcome.PENDING
    assert document.integrate(gap).repeated


def test_deletions_known_or_new() -> None:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=3)
    text = doc.get("t", type=pycrdt.Text)
    text += "abc"
    document = Document()
    document.integrate(doc.get_update())
    deletion = update(deletes={3: [(0, 1)]})
    assert document.integrate(deletion).outcome is Outcome.NEW
    assert document.integrate(deletion).outcome is Outcome.KNOWN
    assert text_of(document) == "bc"


def test_holds_same_content_only() -> None:
    hi = update(group(9, 0, string("hi")))
    document = Document()
    document.integrate(hi)
    assert document.holds(hi)
    assert document.holds(update(group(9, 1, string("i", origin=(9, 0)))))  # a split of it
    forged = update(group(9, 0, string("yo")))  # same clocks, other content
    assert document.integrate(forged).outcome is Outcome.KNOWN
    assert not document.holds(forged)
    assert not document.holds(update(group(9, 0, string("hi", root="other"))))
    assert not document.holds(update(group(9, 0, string("hij"))))  # beyond the state vector
    assert document.holds(update(group(9, 0, gc(2))))  # carries nothing: nothing to vouch for
    assert document.holds(b"\x00\x00")


def test_holds_refuses_deleted_or_collected_content() -> None:
    hi = update(group(9, 0, string("hi")))
    document = Document()
    document.integrate(hi)
    document.integrate(update(deletes={9: [(0, 2)]}))
    assert not document.holds(hi)  # deleted content: the document cannot vouch for "hi"
    squatted = Document()
    squatted.integrate(update(group(9, 0, gc(5))))
    assert squatted.integrate(hi).outcome is Outcome.KNOWN
    assert not squatted.holds(hi)


def test_parent_must_be_a_shared_type() -> None:
    # Yrs stops half-way (RuntimeError) on a parent ID naming a non-type item.
    document = Document()
    document.integrate(update(group(4, 0, string("abc"), item(7, b"\x02", origin=(4, 2)))))
    before = document.full_update()
    with pytest.raises(InvalidUpdate, match="not a shared type"):
        document.integrate(update(group(8, 0, string("z"), string("x", parent=(4, 1)))))
    with pytest.raises(InvalidUpdate, match="not a shared type"):
        document.integrate(update(group(8, 0, string("z"), string("x", parent=(8, 0)))))
    assert document.full_update() == before
    assert document.integrate(update(group(8, 0, string("x", parent=(4, 3))))).outcome is Outcome.NEW
    assert document.integrate(
        update(group(8, 1, item(7, b"\x01", origin=(8, 0)), string("y", parent=(8, 1))))
    )


def test_unknown_parent_is_refused_unless_the_source_checked_it() -> None:
    child = update(group(8, 0, string("x", parent=(4, 0))))
    with pytest.raises(InvalidUpdate, match="parent not known"):
        Document().integrate(child)
    assert Document().integrate(child, unknown_parents=True).outcome is Outcome.PENDING
    assert Document().apply(child)  # the compatible entry point lets it wait


def test_raw_yrs_fails_half_way_on_such_parents() -> None:
    """Why the parent check exists: pycrdt alone raises RuntimeError after changing the doc."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.apply_update(update(group(4, 0, string("abc"))))
    before = doc.get_update()
    with pytest.raises(RuntimeError):
        doc.apply_update(update(group(8, 0, string("z"), string("x", parent=(4, 1)))))
    assert doc.get_update() != before


def test_overlap_with_other_content_is_refused() -> None:
    document = Document()
    document.integrate(update(group(4, 0, any_array(b"\x7e", b"\x7e", root="a"))))
    before = document.full_update()
    with pytest.raises(InvalidUpdate, match="other content"):
        document.integrate(update(group(4, 1, string("xy", root="t"))))  # clock 1 is an Any
    assert document.full_update() == before
    same_then_more = update(group(4, 0, any_array(b"\x7e", b"\x7e", b"\x7d\x01", root="a")))
    assert document.integrate(same_then_more).outcome is Outcome.NEW


def test_deletes_beyond_the_document() -> None:
    document = Document()
    document.integrate(update(group(7, 0, string("abc"))))
    assert document.deletes_beyond(update(deletes={7: [(1, 1)]})) == {}
    assert document.deletes_beyond(update(deletes={7: [(2, 10)], 8: [(0, 1)]})) == {7: [(3, 12)], 8: [(0, 1)]}
    own = update(group(7, 3, string("de", origin=(7, 2))), deletes={7: [(3, 2)]})
    assert document.deletes_beyond(own) == {}


def test_classify_uses_the_reader() -> None:
    hi = update(group(1, 0, string("hi")))
    assert classify(hi, b"\x00") is Novelty.NEW
    assert classify(hi, b"\x01\x01\x02") is Novelty.KNOWN
    assert classify(update(deletes={1: [(0, 1)]}), b"\x01\x01\x02") is Novelty.KNOWN_WITH_DELETIONS
    with pytest.raises(InvalidUpdate):
        classify(update(group(1, MAX_CLOCK_END, string("x"))), b"\x00")


def test_state_vector_bomb_is_refused_before_yrs() -> None:
    """Issue 7 point 5: 2^29 entries claimed in 8 bytes."""
    document = Document()
    document.integrate(update(group(1, 0, string("hi"))))
    bomb = v(2**29) + b"\x01" * (8 - len(v(2**29)))
    assert len(bomb) == 8
    with pytest.raises(InvalidStateVector):
        document.diff(bomb)
    with pytest.raises(InvalidStateVector):
        document.diff(v(1) + v(1) + v(2**32))
    assert read_state_vector(document.state_vector()) == {1: 2}
    assert document.diff(b"\x01\x01\x01") == update(group(1, 1, string("i", origin=(1, 0))))
