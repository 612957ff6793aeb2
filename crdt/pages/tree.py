"""The space-index document `<space>/index`: a space's page tree for clients, live.

Layout (the wire contract for any Yjs client): `Map "pages"`, page id → a JSON object
`{"title": str, "parent": str ("" at the top), "position": str}`. Siblings sort by
`position` as strings (code point order). A page in the trash is not in the map. Only the
server writes it (clients may only read), so a move or a rename is one key set: O(1) in the
size of the tree, for the server and for every client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pycrdt

__all__ = ["INDEX_ROOT", "IndexEntry", "index_update", "read_index"]

INDEX_ROOT = "pages"
IndexEntry = Mapping[str, str]


def index_update(
    state: bytes,
    upserts: Mapping[str, IndexEntry],
    removals: Iterable[str] = (),
    *,
    replace: bool = False,
) -> bytes:
    """The update that sets `upserts` and removes `removals` in the index whose full state is
    `state`; with `replace`, every other entry goes too (a rebuild). Entries already as
    wanted are not written again; b"" when nothing changes."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    if state:
        doc.apply_update(state)
    before = doc.get_state()
    pages = doc.get(INDEX_ROOT, type=pycrdt.Map)
    changed = False
    with doc.transaction():
        gone = set(removals)
        if replace:
            gone.update(key for key in pages.keys() if key not in upserts)
        for key in gone:
            if key in pages:
                del pages[key]
                changed = True
        for key, entry in upserts.items():
            value = dict(entry)
            if pages.get(key) != value:
                pages[key] = value
                changed = True
    return doc.get_update(before) if changed else b""


def read_index(doc: pycrdt.Doc[Any]) -> dict[str, dict[str, Any]]:
    pages = doc.get(INDEX_ROOT, type=pycrdt.Map)
    return {key: dict(value) for key, value in pages.items() if isinstance(value, dict)}
