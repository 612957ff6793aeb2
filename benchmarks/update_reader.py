"""Cost of validating updates before Yrs sees them: the reader per update, Document.integrate
against raw pycrdt, and the state-vector bomb before/after.

    .venv/bin/python benchmarks/update_reader.py

Prints microseconds per call (best of 7 rounds: the machine is shared). Figures and discussion
in docs/benchmarks.md ("Validating updates").
"""

from __future__ import annotations

import sys
import time
import timeit
from pathlib import Path
from typing import Any

import pycrdt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crdt.document import Document
from crdt.state_vectors import read_state_vector
from crdt.update_format import read_update
from crdt.updates import decode_state_vector
from protocol.lib0 import var_uint


def best_us(fn: Any, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def keystrokes() -> list[tuple[str, bytes]]:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=3141592653)
    captured: list[bytes] = []
    doc.observe(lambda event: captured.append(event.update))
    text = doc.get("t", type=pycrdt.Text)
    text += "hello world"
    text.insert(5, "X")
    text.insert(3, "é")
    del text[2:4]
    doc.get("m", type=pycrdt.Map)["k"] = {"a": [1, 2.5, "x"]}
    names = ["first insert", "keystroke (origin+right)", "keystroke é", "backspace", "map set"]
    return list(zip(names, captured, strict=True))


def document_with_clients(clients: int) -> Document:
    base: pycrdt.Doc[Any] = pycrdt.Doc()
    for i in range(clients):
        peer: pycrdt.Doc[Any] = pycrdt.Doc(client_id=1000 + i)
        peer.apply_update(base.get_update())
        text = peer.get("t", type=pycrdt.Text)
        text += "x"
        base.apply_update(peer.get_update(base.get_state()))
    document = Document()
    document.apply_unchecked(base.get_update())
    return document


def typing_into(document: Document, count: int) -> list[bytes]:
    peer: pycrdt.Doc[Any] = pycrdt.Doc(client_id=99)
    peer.apply_update(document.full_update())
    captured: list[bytes] = []
    peer.observe(lambda event: captured.append(event.update))
    text = peer.get("t", type=pycrdt.Text)
    for i in range(count):
        text.insert(i, "k")
    return captured


def main() -> None:
    print("read_update per update (us):")
    for name, update in keystrokes():
        print(f"  {name:28} {len(update):4} B  {best_us(lambda u=update: read_update(u), 20000):6.2f}")

    for clients in (10, 5000):
        document = document_with_clients(clients)
        raw = pycrdt.Doc()
        raw.apply_update(document.full_update())
        updates = typing_into(document, 3000)
        start = time.perf_counter()
        for update in updates[:1000]:
            raw.apply_update(update)
        raw_us = (time.perf_counter() - start) / 1000 * 1e6
        start = time.perf_counter()
        for update in updates[:1000]:
            document.integrate(update)
        integrate_us = (time.perf_counter() - start) / 1000 * 1e6
        start = time.perf_counter()
        for update in updates[:1000]:
            document.integrate(update)  # again: KNOWN
        known_us = (time.perf_counter() - start) / 1000 * 1e6
        state = document.state_vector()
        decode_us = best_us(lambda s=state: decode_state_vector(s), 10)
        print(
            f"document with {clients} client ids: raw apply {raw_us:.1f} us, integrate {integrate_us:.1f} us,"
            f" integrate again (known) {known_us:.1f} us, decode its state vector {decode_us:.0f} us"
        )

    bomb = var_uint(2**29) + b"\x01" * 4
    document = document_with_clients(10)
    start = time.perf_counter()
    try:
        document.diff(bomb)
    except Exception as exc:
        elapsed = (time.perf_counter() - start) * 1e6
        print(f"state-vector bomb ({len(bomb)} B): refused in {elapsed:.1f} us ({exc})")
    start = time.perf_counter()
    try:
        document.ydoc.get_update(bomb)
    except Exception:
        pass
    print(f"  the same bomb given to pycrdt directly: {(time.perf_counter() - start) * 1e3:.0f} ms")
    assert read_state_vector(document.state_vector())


if __name__ == "__main__":
    main()
