"""Properties of the update reader and the document over real and mutated pycrdt updates."""

from __future__ import annotations

from typing import Any

import pycrdt
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from crdt.document import Document, Outcome
from crdt.errors import InvalidUpdate
from crdt.state_vectors import read_state_vector
from crdt.update_format import read_update, read_update_detail

from .strategies import ROOTS, Editing, editing, mutated, rebranded

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def content(doc: pycrdt.Doc[Any]) -> dict[str, Any]:
    """What a reader sees of the four roots (attributes sorted: Yrs keeps them in a hash map;
    floats to 12 digits: Yrs re-parses embed JSON with serde_json's fast float parser, which
    can move a float by one unit in the last place at every re-encoding)."""
    return _rounded({name: _seen(doc.get(name, type=kind)) for name, kind in ROOTS.items()})


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, (list, tuple)):
        return type(value)(_rounded(item) for item in value)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


def _seen(shared: Any) -> Any:
    if isinstance(shared, (pycrdt.Text, pycrdt.XmlText)):
        return (
            "text",
            shared.diff(),
            sorted(dict(shared.attributes).items()) if isinstance(shared, pycrdt.XmlText) else None,
        )
    if isinstance(shared, (pycrdt.XmlFragment, pycrdt.XmlElement)):
        tag = shared.tag if isinstance(shared, pycrdt.XmlElement) else None
        attributes = (
            sorted(dict(shared.attributes).items()) if isinstance(shared, pycrdt.XmlElement) else None
        )
        return ("xml", tag, attributes, [_seen(child) for child in shared.children])
    if isinstance(shared, pycrdt.Map):
        return {key: _seen(value) for key, value in shared.items()}
    if isinstance(shared, pycrdt.Array):
        return [_seen(value) for value in shared]
    return shared


def rebuilt(*updates: bytes) -> Document:
    document = Document()
    for update in updates:
        document.apply_unchecked(update)
    return document


@SETTINGS
@given(editing())
def test_every_update_pycrdt_makes_is_accepted(session: Editing) -> None:
    for update in session.all_updates():
        try:
            summary = read_update(update)
        except InvalidUpdate as exc:
            raise AssertionError(f"{exc.reason}: {update.hex()}") from exc
        assert summary.state_vector() == read_state_vector(pycrdt.get_state(update))
        detailed, structs = read_update_detail(update)
        assert detailed == summary
        for struct in structs:
            assert struct.length > 0


@SETTINGS
@given(editing())
def test_document_integrates_sessions_and_holds_them(session: Editing) -> None:
    document = Document()
    for update in session.updates:
        document.integrate(update)
    for peer in session.peers:
        document.integrate(peer.get_update())
    everything = pycrdt.Doc()
    for peer in session.peers:
        everything.apply_update(peer.get_update())
    assert content(document.ydoc) == content(everything)
    assert document.state_vector() == everything.get_state() or read_state_vector(
        document.state_vector()
    ) == read_state_vector(everything.get_state())
    for update in session.all_updates():
        result = document.integrate(update)
        assert result.outcome is Outcome.KNOWN or result.repeated or not result.summary.structs
    # Updates that overlap what a document has (same content) are taken, never refused.
    for cut in range(len(session.updates)):
        partial = rebuilt(*session.updates[:cut])
        for peer in session.peers:
            partial.integrate(peer.get_update(), unknown_parents=True)
    # Every transaction of a peer whose content nobody deleted since is held verbatim.
    for peer in session.peers:
        assert document.holds(peer.get_update()) == holds_reference(document, peer.get_update())


def holds_reference(document: Document, update: bytes) -> bool:
    """Slow reference for `holds` on a full state: the document re-encodes to the same
    structs (same clocks, origins, content units)."""
    from crdt.content import structs_held

    _, ours = read_update_detail(update)
    _, theirs = read_update_detail(document.full_update())
    return structs_held(ours, theirs, read_state_vector(document.state_vector()))


@SETTINGS
@given(st.data())
def test_mutated_updates_hurt_no_other_client(data: st.DataObject) -> None:
    session = data.draw(editing())
    candidates = session.all_updates()
    original = data.draw(st.sampled_from(candidates))
    if data.draw(st.booleans()):
        original = rebranded(original, data.draw(st.integers(1, 2**53 - 1)))
    hostile = data.draw(mutated(original))

    document = rebuilt(*(peer.get_update() for peer in session.peers))
    before = document.full_update()
    vector_before = read_state_vector(document.state_vector())
    # Writing under a client id the document already has, the order of arrival decides what
    # wins (Yjs assumes one writer per id: the server enforces who writes which id).
    try:
        collides = bool(read_update(hostile).structs.keys() & vector_before.keys())
    except InvalidUpdate:
        collides = False
    try:
        summary = read_update(hostile)
    except InvalidUpdate as exc:
        event("reader: " + exc.reason.split(" after")[0][:40])
        summary = None
    try:
        result = document.integrate(hostile)
    except InvalidUpdate as exc:
        if summary is not None:
            event(f"core refused: {exc.reason}")
        assert document.full_update() == before
        return
    event(f"accepted: {result.outcome.value}")
    assert summary is not None, "the document took an update the reader refuses"

    # Clocks of clients the update does not write stay as they were; none goes backwards.
    touched = summary.structs.keys() | summary.deletes.keys()
    vector_after = read_state_vector(document.state_vector())
    for client, clock in vector_before.items():
        assert vector_after.get(client, 0) >= clock
        if client not in touched:
            assert vector_after.get(client, 0) == clock
    # Not corrupted: the state round-trips; and the update commutes with the others' content
    # (a wrapped clock or a misread struct would make the order matter).
    assert content(rebuilt(document.full_update()).ydoc) == content(document.ydoc)
    if collides:
        event("collides with held clocks")
        return
    reordered = Document()
    try:
        reordered.integrate(hostile)
    except InvalidUpdate as exc:  # its parent is not there yet: refused, not left pending
        assert "parent not known" in exc.reason
        return
    for peer in session.peers:
        reordered.integrate(peer.get_update())
    assert content(reordered.ydoc) == content(document.ydoc)
