"""`XmlFragment "default"` (as y-prosemirror writes it) → `Node`.

y-prosemirror's layout (sync-plugin.js, v1.3): a block or inline node is an `XmlElement`
named after its node type, its non-null attributes as XML attributes (any JSON value:
`level` is a number, `checked` a boolean); a run of text nodes is one `XmlText` whose
formatting attributes are the marks: the mark's name → the mark's attrs (`{"bold": {}}`,
`{"link": {"href": ...}}`), with `--<8-char hash>` after the name for marks that may
overlap themselves. Anything else a client may have written (embeds in text, attribute
values that are objects, nesting beyond `MAX_DEPTH`) is skipped, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pycrdt

from .model import MAX_DEPTH, Mark, Node, Scalar

__all__ = ["read_fragment", "read_page"]

ROOT = "default"
# y-prosemirror's hashedMarkNameRegex: overlapping marks are stored as "name--<hash>".
_HASHED_MARK = re.compile(r"(.*)--[a-zA-Z0-9+/=]{8}$")
_SCALARS = (str, int, float, bool)


def read_page(doc: pycrdt.Doc[Any]) -> Node:
    """The page content of `doc` (an empty document if it has none)."""
    return read_fragment(doc.get(ROOT, type=pycrdt.XmlFragment))


def read_fragment(fragment: pycrdt.XmlFragment) -> Node:
    root = Node("doc")
    root.content = _children(fragment.children, 1)
    return root


def _children(children: Iterable[Any], depth: int) -> list[Node]:
    out: list[Node] = []
    if depth > MAX_DEPTH:
        return out
    for child in children:
        if isinstance(child, pycrdt.XmlText):
            out.extend(_text_nodes(child))
        elif isinstance(child, pycrdt.XmlElement):
            tag = child.tag
            if not tag:
                continue
            # pycrdt types `__iter__` as returning an Iterable (of (key, value) pairs).
            node = Node(tag, _scalar_attrs(dict(child.attributes.__iter__())))
            node.content = _children(child.children, depth + 1)
            out.append(node)
    return out


def _text_nodes(text: pycrdt.XmlText) -> list[Node]:
    out = []
    for value, attrs in text.diff():
        if isinstance(value, str) and value:
            out.append(Node.of_text(value, _marks(attrs or {})))
    return out


def _marks(attrs: Mapping[str, Any]) -> tuple[Mark, ...]:
    marks = []
    for key, value in attrs.items():
        if value is None or key == "ychange":
            continue
        match = _HASHED_MARK.fullmatch(key)
        name = match[1] if match else key
        mark_attrs = _scalar_attrs(value) if isinstance(value, Mapping) else {}
        marks.append(Mark(name, tuple(sorted(mark_attrs.items()))))
    return tuple(marks)


def _scalar_attrs(attrs: Mapping[Any, Any]) -> dict[str, Scalar]:
    return {str(k): v for k, v in attrs.items() if isinstance(k, str) and isinstance(v, _SCALARS)}
