"""Page content: the ProseMirror/Tiptap layout of `XmlFragment "default"` (y-prosemirror),
rendered to Markdown, sanitized HTML and plain text, and parsed from Markdown. Pure: bytes
and strings in, strings and updates out; the server runs the costly calls in a thread.

    content = read_page(doc)               # pycrdt.Doc -> Node
    to_markdown(content), to_html(content), to_text(content)
    update = replacement_update(state, parse_markdown(text))   # a server edit
"""

from __future__ import annotations

from typing import Any, Literal

import pycrdt

from ..errors import CrdtError
from .html_out import to_html
from .markdown_in import MAX_BYTES, parse_markdown
from .markdown_out import to_markdown
from .model import MAX_DEPTH, MAX_NODES, Mark, Node, PageContentError, structure
from .text_out import to_text
from .yjs_read import read_fragment, read_page
from .yjs_write import replace_content, replacement_update

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "Format",
    "Mark",
    "Node",
    "PageContentError",
    "parse_markdown",
    "read_fragment",
    "read_page",
    "render",
    "render_state",
    "replace_content",
    "replacement_update",
    "structure",
    "to_html",
    "to_markdown",
    "to_text",
]

Format = Literal["markdown", "html", "text"]

_RENDERERS = {"markdown": to_markdown, "html": to_html, "text": to_text}


def render(content: Node, fmt: Format) -> str:
    return _RENDERERS[fmt](content)


def render_state(state: bytes, fmt: Format) -> str:
    """The page whose full document state (a v1 update) is `state`, rendered; for a thread
    of its own (the pycrdt document is made and dropped here)."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    if state:
        try:
            doc.apply_update(state)
        except Exception as exc:  # pyo3 panics are BaseException-derived only in odd builds
            raise CrdtError("the page's document does not decode") from exc
    return render(read_page(doc), fmt)
