"""The thread validator (crdt/thread_rules.py over crdt/thread_index.py) with updates made by
pycrdt clients, as a Yjs client makes them, and a few hand-made hostile ones: what an honest
poster, replier, editor and reactor may do, and every forbidden change refused with the
thread (the "server" document) unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pycrdt
import pytest

from crdt.thread_index import ThreadIndex
from crdt.thread_rules import ThreadRefused, Writer, check_update
from crdt.update_format import read_update_detail

from .craft import any_array, group, item, update, v, vs

NOW = 1_700_000_000_000.0
TOLERANCE = 300_000.0
ANN, BOB, MOD = "ann@local", "bob@local", "mod@local"

Edit = Callable[[pycrdt.Array[Any]], None]


class Thread:
    """A server document with its index, and pycrdt clients that edit copies of it."""

    def __init__(self) -> None:
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.index = ThreadIndex.of_document(self.doc.get_update())

    def client(self) -> pycrdt.Doc[Any]:
        doc: pycrdt.Doc[Any] = pycrdt.Doc()
        doc.apply_update(self.doc.get_update())
        return doc

    def make(self, who: pycrdt.Doc[Any], edit: Edit) -> bytes:
        """The update `edit` makes on client `who` (brought up to date first)."""
        who.apply_update(self.doc.get_update())
        before = who.get_state()
        with who.transaction():
            edit(who.get("messages", type=pycrdt.Array))
        return who.get_update(before)

    def send(self, update: bytes, writer: str, *, moderator: bool = False, now: float = NOW) -> None:
        """Validate, then (accepted) apply to the server document and commit to the index."""
        verdict = check_update(self.index, update, Writer(writer, moderator), now, TOLERANCE)
        self.doc.apply_update(update)
        verdict.commit(self.index)

    def edit(self, who: pycrdt.Doc[Any], writer: str, edit: Edit, **kwargs: Any) -> None:
        self.send(self.make(who, edit), writer, **kwargs)

    def refused(self, who: pycrdt.Doc[Any], writer: str, edit: Edit, kind: str, **kwargs: Any) -> None:
        before = self.messages()
        with pytest.raises(ThreadRefused) as refusal:
            self.edit(who, writer, edit, **kwargs)
        assert refusal.value.kind == kind, refusal.value.reason
        assert self.messages() == before

    def messages(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.doc.get("messages", type=pycrdt.Array).to_py() or []
        return result


def message(mid: str, author: str, body: str = "hello", **extra: Any) -> pycrdt.Map[Any]:
    fields: dict[str, Any] = {
        "id": mid, "author": author, "created": NOW, "body": pycrdt.Text(body), "deleted": False,
        "reactions": pycrdt.Map(),
    }  # fmt: skip
    fields.update(extra)
    return pycrdt.Map(fields)


def post(mid: str, author: str, body: str = "hello", **extra: Any) -> Edit:
    return lambda messages: messages.append(message(mid, author, body, **extra))


@pytest.fixture
def thread() -> Thread:
    """A thread with ann's message m1 and bob's reply m2."""
    t = Thread()
    t.edit(t.client(), ANN, post("m1", ANN, "hello"))
    t.edit(t.client(), BOB, post("m2", BOB, "hi ann", parent="m1"))
    return t


def test_honest_post_reply_edit_delete_and_reactions(thread: Thread) -> None:
    ann, bob = thread.client(), thread.client()
    thread.edit(ann, ANN, lambda m: m[0]["body"].insert(5, " world"))
    thread.edit(ann, ANN, lambda m: m[0]["body"].__delitem__(slice(0, 1)))
    thread.edit(ann, ANN, lambda m: m[0].__setitem__("edited", NOW + 1))
    thread.edit(bob, BOB, lambda m: m[0]["reactions"].__setitem__(BOB, "👍"))
    thread.edit(bob, BOB, lambda m: m[0]["reactions"].__setitem__(BOB, "🎉"))
    thread.edit(ann, ANN, lambda m: m[0]["reactions"].__setitem__(ANN, "❤️"))
    thread.edit(ann, ANN, lambda m: m[0]["reactions"].pop(ANN))
    thread.edit(bob, BOB, lambda m: m[1].__setitem__("deleted", True))
    thread.edit(ann, ANN, post("m3", ANN, "a second reply", parent="m2"))
    thread.edit(thread.client(), MOD, lambda m: m[1].__setitem__("hidden", True), moderator=True)
    got = thread.messages()
    assert [(m["id"], m["body"], m["deleted"], m.get("parent")) for m in got] == [
        ("m1", "ello world", False, None),
        ("m2", "hi ann", True, "m1"),
        ("m3", "a second reply", False, "m2"),
    ]
    assert got[0]["reactions"] == {BOB: "🎉"} and got[0]["edited"] == NOW + 1 and got[1]["hidden"] is True


def test_several_edits_in_one_update_and_a_sync_step_that_repeats_every_deletion(thread: Thread) -> None:
    ann = thread.client()
    thread.edit(ann, ANN, lambda m: m[0]["body"].insert(0, "well, "))
    thread.edit(ann, ANN, lambda m: m[0]["body"].__delitem__(slice(0, 6)))
    # Offline: a post, an edit and a reaction, then the whole diff at once (as a SyncStep2:
    # Yjs repeats the document's whole delete set in it, others' deletions included).
    offline = thread.client()
    before = offline.get_state()
    with offline.transaction():
        messages = offline.get("messages", type=pycrdt.Array)
        messages.append(message("m4", ANN, "typed offline"))
        messages[0]["body"].insert(0, "!")
        messages[1]["reactions"][ANN] = "👀"
    diff = offline.get_update(before)
    assert read_update_detail(diff)[0].deletes  # ann's earlier deletion travels again
    thread.send(diff, ANN)
    assert [m["body"] for m in thread.messages()] == ["!hello", "hi ann", "typed offline"]


@pytest.mark.parametrize(
    ("writer", "edit", "kind"),
    [
        (BOB, post("m3", ANN, "forged"), "thread_not_author"),
        (BOB, lambda m: m[0]["body"].insert(0, "bob was here "), "thread_not_author"),
        (BOB, lambda m: m[0]["body"].__delitem__(slice(0, 2)), "thread_not_author"),
        (BOB, lambda m: m[0]["reactions"].__setitem__(ANN, "👎"), "thread_not_yours"),
        (ANN, lambda m: m[0].__setitem__("created", NOW + 5), "thread_immutable"),
        (ANN, lambda m: m[0].__setitem__("author", BOB), "thread_immutable"),
        (ANN, lambda m: m[0].__setitem__("id", "m9"), "thread_immutable"),
        (BOB, lambda m: m[1].__setitem__("parent", "m2"), "thread_immutable"),
        (ANN, lambda m: m[0].__setitem__("body", pycrdt.Text("replaced")), "thread_immutable"),
        (ANN, lambda m: m[0].__setitem__("reactions", pycrdt.Map()), "thread_immutable"),
        (BOB, lambda m: m[0].__setitem__("deleted", True), "thread_not_author"),
        (BOB, lambda m: m[0].__setitem__("edited", NOW), "thread_not_author"),
        (ANN, lambda m: m[0].__setitem__("hidden", True), "thread_not_moderator"),
        (ANN, lambda m: m[0].__setitem__("colour", "red"), "thread_shape"),
        (ANN, lambda m: m[0].pop("deleted"), "thread_removal"),
        (ANN, lambda m: m.pop(0), "thread_removal"),
        (ANN, lambda m: m.append("not a map"), "thread_shape"),
        (ANN, lambda m: m.doc.get("notes", type=pycrdt.Map).__setitem__("k", 1), "thread_shape"),
        (ANN, lambda m: m[0]["body"].insert(0, "x", {"bold": True}), "ok"),
        (ANN, post("m3", ANN, created=NOW - 10 * 60_000), "thread_clock"),
        (ANN, post("m3", ANN, created="now"), "thread_value"),
        (ANN, post("m1", ANN), "thread_duplicate"),
        (ANN, post("m3", ANN, parent="nope"), "thread_value"),
        (ANN, post("m3", ANN, deleted="no"), "thread_value"),
        (ANN, post("m3", ANN, body="fine", hidden=True), "thread_not_moderator"),
        (ANN, lambda m: m.append(pycrdt.Map({"id": "m3", "author": ANN, "created": NOW})), "thread_shape"),
        (BOB, lambda m: m[0]["reactions"].__setitem__(BOB, "x" * 40), "thread_value"),
        (BOB, lambda m: m[0]["reactions"].__setitem__(BOB, 1), "thread_value"),
        ("", post("m3", ""), "thread_anonymous"),
    ],
)
def test_forbidden_changes_are_refused(thread: Thread, writer: str, edit: Edit, kind: str) -> None:
    if kind == "ok":  # the control: formatting one's own body is an edit like another
        thread.edit(thread.client(), writer, edit)
    else:
        thread.refused(thread.client(), writer, edit, kind)


def test_removing_another_persons_reaction_is_refused(thread: Thread) -> None:
    thread.edit(thread.client(), ANN, lambda m: m[1]["reactions"].__setitem__(ANN, "👍"))
    thread.refused(thread.client(), BOB, lambda m: m[1]["reactions"].pop(ANN), "thread_not_yours")


def test_after_a_refusal_the_same_client_is_refused_until_it_starts_over(thread: Thread) -> None:
    bob = thread.client()
    thread.refused(bob, BOB, lambda m: m[0]["body"].insert(0, "x"), "thread_not_author")
    # bob's next, honest, edit follows the refused clocks: it could never integrate.
    thread.refused(bob, BOB, lambda m: m[1]["body"].insert(0, "so, "), "thread_gap")
    thread.edit(thread.client(), BOB, lambda m: m[1]["body"].insert(0, "so, "))
    assert thread.messages()[1]["body"] == "so, hi ann"


def test_an_index_built_from_the_document_equals_the_one_kept_up_to_date(thread: Thread) -> None:
    thread.edit(thread.client(), BOB, lambda m: m[0]["reactions"].__setitem__(BOB, "👍"))
    thread.edit(thread.client(), ANN, lambda m: m[0]["body"].insert(2, "-"))
    rebuilt = ThreadIndex.of_document(thread.doc.get_update())
    assert (rebuilt.messages, rebuilt.authors, rebuilt.ids) == (
        thread.index.messages, thread.index.authors, thread.index.ids,
    )  # fmt: skip
    thread.index = rebuilt
    thread.refused(thread.client(), BOB, lambda m: m[0]["body"].insert(0, "x"), "thread_not_author")
    thread.edit(thread.client(), ANN, lambda m: m[0]["body"].insert(0, "x"))


def test_structs_of_other_origins_wait_for_what_they_follow(thread: Thread) -> None:
    """Updates the index records (other nodes, sites) may arrive out of order."""
    ann = thread.client()
    first = thread.make(ann, post("m3", ANN, "first"))
    ann.apply_update(first)
    second = thread.make(ann, lambda m: m[2]["body"].insert(5, " and more"))
    summary, details = read_update_detail(second)
    thread.index.record(details, summary.deletes)  # before the message it edits
    assert thread.index.waiting == 1
    summary, details = read_update_detail(first)
    thread.index.record(details, summary.deletes)
    assert thread.index.waiting == 0
    thread.doc.apply_update(first)
    thread.doc.apply_update(second)
    thread.refused(thread.client(), BOB, lambda m: m[2]["body"].insert(0, "x"), "thread_not_author")
    thread.edit(thread.client(), ANN, lambda m: m[2]["body"].insert(0, "x"))


def test_hand_made_updates(thread: Thread) -> None:
    client = 4242
    m1 = thread.index.ids["m1"]
    # Text in ann's body placed after an unknown item: nowhere to place it.
    unknown = update(group(client, 0, item(4, vs("x"), origin=(999, 3))))
    with pytest.raises(ThreadRefused, match="does not hold"):
        thread.send(unknown, BOB)
    # An item whose left origin is in bob's body and right origin in ann's.
    both = update(group(client, 0, item(4, vs("x"), origin=_last_body_clock(thread, "m2"),
                                        right=_last_body_clock(thread, "m1"))))  # fmt: skip
    with pytest.raises(ThreadRefused, match="between two different places"):
        thread.send(both, BOB)
    # A new key of ann's message, named by its parent ID.
    key = update(group(client, 0, item(8, v(1) + b"\x78", root=None, parent=m1, key="hidden")))
    with pytest.raises(ThreadRefused, match="moderators"):
        thread.send(key, BOB)
    thread.send(key, MOD, moderator=True)
    assert thread.messages()[0]["hidden"] is True
    # A second root, by name.
    other = update(group(client + 1, 0, any_array(b"\x77" + vs("x"), root="notes")))
    with pytest.raises(ThreadRefused, match='only the "messages" array'):
        thread.send(other, ANN)


def _last_body_clock(thread: Thread, mid: str) -> tuple[int, int]:
    """The ID of the last character of a message's body, from the index."""
    found = None
    for client, runs in thread.index._runs.items():
        for end, slot in zip(runs.ends, runs.slots, strict=True):
            if slot == ("body", thread.index.ids[mid]):
                found = (client, end - 1)
    assert found is not None
    return found
