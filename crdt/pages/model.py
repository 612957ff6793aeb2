"""Page content as a tree: what y-prosemirror keeps in `XmlFragment "default"`, read into plain
Python values (and back), so rendering and parsing never touch pycrdt.

The node and mark names are those of the Tiptap StarterKit schema (ProseMirror names, as
y-prosemirror stores them as XmlElement node names and XmlText format keys) plus tables,
task lists, images and mentions. A node type this module does not know is kept (its text
still renders); an attribute value that is not a JSON scalar is dropped.

Limits: every reader and writer stops at `MAX_DEPTH` levels of nesting (deeper content is
left out, never recursed into), and Markdown import refuses more than `MAX_NODES` nodes:
a page is hostile input like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import CrdtError

__all__ = [
    "BLOCK_CONTAINERS",
    "MARK_ORDER",
    "MAX_DEPTH",
    "MAX_NODES",
    "Mark",
    "Node",
    "PageContentError",
    "Scalar",
    "mention_text",
    "structure",
]

# Levels of nesting below the document node: 16 lists inside each other (a list and its item
# are two levels) and then some. Deeper content is not rendered; Markdown that deep is refused.
MAX_DEPTH = 40
# Nodes one Markdown import may create (a 1 MiB body of "-\n" would otherwise make 500,000).
MAX_NODES = 50_000

Scalar = str | int | float | bool | None

# Block nodes whose children are blocks (the rest hold inline content or nothing).
BLOCK_CONTAINERS = frozenset(
    {"doc", "blockquote", "bulletList", "orderedList", "listItem", "taskList", "taskItem",
     "table", "tableRow", "tableHeader", "tableCell"}
)  # fmt: skip
# Outermost first: a link holds bold text, code text holds nothing (Markdown code spans
# cannot contain formatting).
MARK_ORDER = ("link", "bold", "italic", "strike", "underline", "code")


class PageContentError(CrdtError):
    """Content that cannot become a page (Markdown too large or too deeply nested);
    `code` is stable, `reason` safe to show."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code

    def __reduce__(self) -> tuple[type[PageContentError], tuple[str, str]]:
        return type(self), (self.code, self.reason)  # it crosses to and from worker processes


@dataclass(frozen=True, slots=True)
class Mark:
    type: str
    attrs: tuple[tuple[str, Scalar], ...] = ()

    def attr(self, name: str) -> Scalar:
        for key, value in self.attrs:
            if key == name:
                return value
        return None

    @property
    def rank(self) -> int:
        return MARK_ORDER.index(self.type) if self.type in MARK_ORDER else len(MARK_ORDER)


@dataclass(slots=True)
class Node:
    """A ProseMirror node: `type` "text" has `text` and `marks`; the others `attrs` and
    `content`."""

    type: str
    attrs: dict[str, Scalar] = field(default_factory=dict)
    content: list[Node] = field(default_factory=list)
    text: str = ""
    marks: tuple[Mark, ...] = ()

    @classmethod
    def of_text(cls, text: str, marks: tuple[Mark, ...] = ()) -> Node:
        return cls("text", text=text, marks=tuple(sorted(marks, key=lambda m: m.rank)))

    def attr(self, name: str, default: Scalar = None) -> Scalar:
        value = self.attrs.get(name)
        return default if value is None else value

    def count(self) -> int:
        """Nodes in this subtree (iterative: content may be deep)."""
        total, stack = 0, [self]
        while stack:
            node = stack.pop()
            total += 1
            stack.extend(node.content)
        return total


def mention_text(node: Node) -> str:
    """How a mention reads in text: "@" and the person's id (`name@site`), else its label."""
    return "@" + str(node.attr("id") or node.attr("label") or "")


# Attributes that tell two pages' structure apart; the rest (colwidth, target, ...) are
# presentation. Integers are compared as integers (y-prosemirror writes JS numbers, which
# pycrdt reads as floats).
_STRUCTURAL = {
    "heading": ("level",),
    "orderedList": ("start",),
    "codeBlock": ("language",),
    "taskItem": ("checked",),
    "image": ("src", "alt"),
    "mention": ("id",),
}


def structure(node: Node, depth: int = 0) -> dict[str, Any]:
    """A comparable summary of a page (types, text, marks, the attributes in `_STRUCTURAL`):
    what "shows the same structure" means between the server and a ProseMirror client."""
    if node.type == "text":
        out: dict[str, Any] = {"text": node.text}
        if node.marks:
            out["marks"] = [m.type if m.type != "link" else f"link:{m.attr('href')}" for m in node.marks]
        return out
    out = {"type": node.type}
    attrs = {}
    for name in _STRUCTURAL.get(node.type, ()):
        value = node.attrs.get(name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value is not None and not (node.type == "orderedList" and value == 1):
            attrs[name] = value
    if attrs:
        out["attrs"] = attrs
    if node.content and depth < MAX_DEPTH:
        children = [c for c in node.content if c.type != "text" or c.text]
        out["content"] = _merged([structure(child, depth + 1) for child in children])
    return out


def _merged(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent text with the same marks as one (how it splits is not structure)."""
    out: list[dict[str, Any]] = []
    for child in children:
        if out and "text" in child and "text" in out[-1] and out[-1].get("marks") == child.get("marks"):
            out[-1] = {**out[-1], "text": out[-1]["text"] + child["text"]}
        else:
            out.append(child)
    return out
