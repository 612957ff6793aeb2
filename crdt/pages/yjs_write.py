"""`Node` → `XmlFragment "default"`, in the layout y-prosemirror reads (see yjs_read.py).

A server edit of a page (Markdown import, `PUT` of content) replaces the fragment's children:
editors that have the page open see the new content at once, as if someone had selected
everything and pasted. Runs of text nodes become one `XmlText` with one formatted insert per
node, as y-prosemirror's `createTypeFromTextNodes` does; null attributes are not written.
"""

from __future__ import annotations

from typing import Any

import pycrdt

from .model import MAX_DEPTH, Mark, Node, Scalar
from .yjs_read import ROOT

__all__ = ["replace_content", "replacement_update"]


def replacement_update(state: bytes, content: Node) -> bytes:
    """The update that turns the document whose full state is `state` into one whose page
    content is `content` (only the fragment changes)."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    if state:
        doc.apply_update(state)
    before = doc.get_state()
    replace_content(doc, content)
    return doc.get_update(before)


def replace_content(doc: pycrdt.Doc[Any], content: Node) -> None:
    fragment = doc.get(ROOT, type=pycrdt.XmlFragment)
    with doc.transaction():
        if len(fragment.children):
            del fragment.children[0 : len(fragment.children)]
        _append_children(fragment, content.content, 1)


def _append_children(parent: pycrdt.XmlFragment | pycrdt.XmlElement, nodes: list[Node], depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    text: pycrdt.XmlText | None = None
    for node in nodes:
        if node.type == "text":
            if not node.text:
                continue
            if text is None:
                text = parent.children.append(pycrdt.XmlText())
            text.insert(len(text), node.text, _format(node.marks))
            continue
        text = None
        element = parent.children.append(pycrdt.XmlElement(node.type, _attributes(node.attrs)))
        _append_children(element, node.content, depth + 1)


def _attributes(attrs: dict[str, Scalar]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if v is not None}


def _format(marks: tuple[Mark, ...]) -> dict[str, Any]:
    return {mark.type: {k: v for k, v in mark.attrs if v is not None} for mark in marks}
