"""Cost of the thread validator per update, in a 10-message and a 10,000-message thread.

    .venv/bin/python benchmarks/thread_validation.py [--messages 10,10000]

For each thread size: the one-off index build (per room load) and its memory, then
`crdt.thread_rules.check_update` for the updates clients send (a post, a reply, a keystroke in
the newest and in the oldest message, a reaction, a deletion flag) and for refused ones (a
forged author, a keystroke in someone else's message). Microseconds per call, best of 7 rounds
(the machine is shared). Figures and discussion in docs/benchmarks.md ("Thread validation").
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pycrdt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crdt.thread_index import ThreadIndex
from crdt.thread_rules import ThreadRefused, Writer, check_update

AUTHORS = 50
NOW = 1_800_000_000_000.0
TOLERANCE = 300_000.0


def person(i: int) -> str:
    return f"person{i % AUTHORS}@local"


def build_thread(messages: int) -> pycrdt.Doc[Any]:
    """`messages` messages by 50 people (one client id each), every 5th a reply, every 3rd with a
    reaction, every 7th edited after posting: the shape of a long discussion."""
    base: pycrdt.Doc[Any] = pycrdt.Doc()
    writers = [pycrdt.Doc(client_id=10_000 + i) for i in range(AUTHORS)]
    for i in range(messages):
        writer = writers[i % AUTHORS]
        writer.apply_update(base.get_update(writer.get_state()))
        before = writer.get_state()
        array = writer.get("messages", type=pycrdt.Array)
        with writer.transaction():
            fields: dict[str, Any] = {
                "id": f"m{i}", "author": person(i), "created": NOW, "deleted": False,
                "body": pycrdt.Text(f"message {i}: a sentence of about forty chars"),
                "reactions": pycrdt.Map({person(i + 1): "👍"} if i % 3 == 0 else {}),
            }  # fmt: skip
            if i % 5 == 4:
                fields["parent"] = f"m{i - 1}"
            array.append(pycrdt.Map(fields))
        if i % 7 == 6:
            with writer.transaction():
                array[len(array) - 1]["body"].insert(8, " (edited)")
                array[len(array) - 1]["edited"] = NOW
        base.apply_update(writer.get_update(before))
    return base


def update_of(thread: pycrdt.Doc[Any], client_id: int, edit: Callable[[pycrdt.Array[Any]], None]) -> bytes:
    """The update a client with a copy of the thread makes with `edit`."""
    client: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
    client.apply_update(thread.get_update())
    before = client.get_state()
    with client.transaction():
        edit(client.get("messages", type=pycrdt.Array))
    return client.get_update(before)


def new_message(mid: str, author: str, parent: str | None = None) -> pycrdt.Map[Any]:
    fields: dict[str, Any] = {"id": mid, "author": author, "created": NOW, "deleted": False,
                              "body": pycrdt.Text("a new message"), "reactions": pycrdt.Map()}  # fmt: skip
    if parent:
        fields["parent"] = parent
    return pycrdt.Map(fields)


def cases(thread: pycrdt.Doc[Any], size: int) -> list[tuple[str, str, bytes, bool]]:
    """(name, writer, update, accepted?)"""
    last, newest_author = size - 1, person(size - 1)
    return [
        ("post a message", "me@local",
         update_of(thread, 1, lambda m: m.append(new_message("new", "me@local"))), True),
        ("reply", "me@local",
         update_of(thread, 2, lambda m: m.append(new_message("new", "me@local", parent=f"m{last}"))), True),
        ("keystroke, newest message", newest_author,
         update_of(thread, 3, lambda m: m[last]["body"].insert(3, "k")), True),
        ("keystroke, oldest message", person(0),
         update_of(thread, 4, lambda m: m[0]["body"].insert(3, "k")), True),
        ("react (own key)", "me@local",
         update_of(thread, 5, lambda m: m[last]["reactions"].__setitem__("me@local", "🎉")), True),
        ("set deleted (author)", newest_author,
         update_of(thread, 6, lambda m: m[last].__setitem__("deleted", True)), True),
        ("refused: forged author", "me@local",
         update_of(thread, 7, lambda m: m.append(new_message("new", person(1)))), False),
        ("refused: another's message", "me@local",
         update_of(thread, 8, lambda m: m[last]["body"].insert(0, "x")), False),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", default="10,10000", help="thread sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    sizes = [int(n) for n in args.messages.split(",")]
    checks: dict[int, list[tuple[str, int, Callable[[], None]]]] = {}
    for size in sizes:
        started = time.perf_counter()
        thread = build_thread(size)
        state = thread.get_update()
        print(f"thread of {size} messages: {len(state):,} B (made in {time.perf_counter() - started:.0f} s)")
        build = min(timeit.repeat(lambda s=state: ThreadIndex.of_document(s), number=1, repeat=3))
        tracemalloc.start()
        index = ThreadIndex.of_document(state)
        memory = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        print(f"  index build {build * 1000:.1f} ms, index memory {memory / 1024:,.0f} KiB")
        checks[size] = []
        for name, writer, update, accepted in cases(thread, size):

            def check(
                i: ThreadIndex = index, u: bytes = update, w: str = writer, ok: bool = accepted
            ) -> None:
                try:
                    check_update(i, u, Writer(w), NOW, TOLERANCE)
                except ThreadRefused:
                    assert not ok
                else:
                    assert ok

            checks[size].append((name, len(update), check))
    # Rounds alternate between the sizes, so a busy moment of the shared machine hits both.
    best: dict[tuple[int, str], float] = {}
    for _ in range(args.rounds):
        for size in sizes:
            for name, _length, check in checks[size]:
                took = timeit.timeit(check, number=500) / 500 * 1e6
                best[size, name] = min(best.get((size, name), took), took)
    header = "".join(f"{size:>12,}" for size in sizes)
    print(f"\ncheck_update, us per update (best of {args.rounds} rounds){' ' * 6}{header}")
    for name, length, _check in checks[sizes[0]]:
        row = "".join(f"{best[size, name]:12.1f}" for size in sizes)
        ratio = f"   x{best[sizes[-1], name] / best[sizes[0], name]:.2f}" if len(sizes) > 1 else ""
        print(f"  {name:28} {length:4} B {row}{ratio}")


if __name__ == "__main__":
    main()
