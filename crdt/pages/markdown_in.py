"""Markdown → `Node`, with markdown-it-py (CommonMark, GFM tables and strikethrough) and the
task-list plugin of mdit-py-plugins, shaped to fit the Tiptap schema:

- raw HTML is text (`html` off), so nothing in a page is markup it did not say;
- a list whose items are all tasks is a `taskList` of `taskItem`s (`checked`); in a mixed
  list the task items keep their `[ ]` as text;
- list items, task items, table cells and quotes start with (or hold) a paragraph, as the
  schema wants; an image, a block node in Tiptap, splits the paragraph it stands in;
- `@name@site` is a mention (an inline rule, so `\\@name@site` stays text);
- soft line breaks are spaces, hard breaks `hardBreak` nodes.

Limits: input is refused (`PageContentError`) beyond `MAX_BYTES`, deeper than `MAX_DEPTH`
(markdown-it's own `maxNesting` stops it from recursing further, and content it skipped
that way is deeper than `MAX_DEPTH` too, so nothing is ever silently dropped) or with more
than `MAX_NODES` nodes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from mdit_py_plugins.tasklists import tasklists_plugin

from .markdown_out import MENTION_ID
from .model import MAX_DEPTH, MAX_NODES, Mark, Node, PageContentError

__all__ = ["MAX_BYTES", "parse_markdown"]

MAX_BYTES = 1024 * 1024
# markdown-it's recursion guard, above MAX_DEPTH (a list level is two token levels, its
# paragraph and inline content two more): deep enough never to cut what we accept.
_MAX_NESTING = 2 * MAX_DEPTH + 8

_MENTION = re.compile("@(" + MENTION_ID + ")")
_NOT_BEFORE_MENTION = re.compile(r"[A-Za-z0-9@._-]")
_CONTAINERS = {
    "paragraph_open": "paragraph",
    "heading_open": "heading",
    "blockquote_open": "blockquote",
    "bullet_list_open": "bulletList",
    "ordered_list_open": "orderedList",
    "list_item_open": "listItem",
    "table_open": "table",
    "tr_open": "tableRow",
    "th_open": "tableHeader",
    "td_open": "tableCell",
}
_MARKS = {"strong_open": "bold", "em_open": "italic", "s_open": "strike"}
_CLOSE_MARKS = {"strong_close": "bold", "em_close": "italic", "s_close": "strike", "link_close": "link"}
_NEEDS_PARAGRAPH = ("listItem", "taskItem", "tableCell", "tableHeader", "blockquote", "doc")


def _mention_rule(state: StateInline, silent: bool) -> bool:
    pos = state.pos
    if state.src[pos] != "@" or (pos > 0 and _NOT_BEFORE_MENTION.match(state.src[pos - 1])):
        return False
    match = _MENTION.match(state.src, pos)
    if match is None:
        return False
    if not silent:
        token = state.push("mention", "", 0)
        token.meta = {"id": match[1]}
    state.pos = match.end()
    return True


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "maxNesting": _MAX_NESTING})
    md.enable(["table", "strikethrough"])
    md.use(tasklists_plugin)
    md.inline.ruler.before("text", "mention", _mention_rule)
    return md


_MD = _parser()


def parse_markdown(source: str) -> Node:
    """The page content `source` says; raises `PageContentError` (see the module's limits)."""
    if len(source.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise PageContentError("too_large", f"Markdown is limited to {MAX_BYTES} bytes")
    source = source.replace("\x00", "\ufffd")
    return _Builder().build(_MD.parse(source))


class _Builder:
    def __init__(self) -> None:
        self.nodes = 0

    def build(self, tokens: Sequence[Token]) -> Node:
        doc = Node("doc")
        stack = [doc]
        for token in tokens:
            if token.nesting == 1:
                node = self._open(token)
                if node is None:
                    stack.append(stack[-1])
                else:
                    stack[-1].content.append(node)
                    stack.append(node)
                if len(stack) > MAX_DEPTH:
                    raise PageContentError("too_deep", f"Markdown may nest at most {MAX_DEPTH} levels")
            elif token.nesting == -1:
                node = stack.pop()
                if token.type.replace("_close", "_open") in _CONTAINERS:
                    _finish(node)
            elif token.type == "inline":
                self._add(stack[-1], self._inline(token.children or []))
            elif token.type in ("fence", "code_block"):
                self._add(stack[-1], [_code_block(token)])
            elif token.type == "hr":
                self._add(stack[-1], [Node("horizontalRule")])
        _finish(doc)
        return doc

    def _count(self, n: int) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            raise PageContentError("too_large", f"a page may hold at most {MAX_NODES} nodes")

    def _add(self, parent: Node, nodes: list[Node]) -> None:
        self._count(sum(node.count() for node in nodes))
        parent.content.extend(nodes)

    def _open(self, token: Token) -> Node | None:
        kind = _CONTAINERS.get(token.type)
        if kind is None:
            return None  # thead, tbody: no node of their own
        self._count(1)
        node = Node(kind)
        if kind == "heading":
            node.attrs["level"] = int(token.tag[1:])
        elif kind == "orderedList":
            start = token.attrGet("start")
            node.attrs["start"] = int(start) if isinstance(start, int | str) and str(start).isdigit() else 1
        elif kind == "bulletList" and token.attrGet("class") == "contains-task-list":
            node.attrs["_tasks"] = True
        elif kind == "listItem" and token.attrGet("class") == "task-list-item":
            node.type = "taskItem"
        return node

    def _inline(self, tokens: Sequence[Token]) -> list[Node]:
        out: list[Node] = []
        marks: list[Mark] = []
        for token in tokens:
            kind = token.type
            if kind == "text":
                if token.content:  # markdown-it leaves empty ones around delimiters
                    out.append(Node.of_text(token.content, tuple(marks)))
            elif kind == "code_inline":
                out.append(Node.of_text(token.content, (*marks, Mark("code"))))
            elif kind == "softbreak":
                out.append(Node.of_text(" ", tuple(marks)))
            elif kind == "hardbreak":
                out.append(Node("hardBreak"))
            elif kind in _MARKS:
                marks.append(Mark(_MARKS[kind]))
            elif kind == "link_open":
                marks.append(Mark("link", (("href", str(token.attrGet("href") or "")),)))
            elif kind in _CLOSE_MARKS:
                name = _CLOSE_MARKS[kind]
                for index in range(len(marks) - 1, -1, -1):
                    if marks[index].type == name:
                        del marks[index]
                        break
            elif kind == "image":
                out.append(
                    Node("image", {"src": str(token.attrGet("src") or ""), "alt": token.content or None})
                )
            elif kind == "mention":
                out.append(Node("mention", {"id": token.meta["id"], "label": None}))
            elif kind == "html_inline" and "task-list-item-checkbox" in token.content:
                out.append(Node("_checkbox", {"checked": 'checked="checked"' in token.content}))
        return out


def _code_block(token: Token) -> Node:
    code = token.content[:-1] if token.content.endswith("\n") else token.content
    language = token.info.strip().split(" ")[0] if token.info else ""
    node = Node("codeBlock", {"language": language or None})
    if code:
        node.content.append(Node.of_text(code))
    return node


def _finish(node: Node) -> None:
    """Once a container is complete: fit it to the schema."""
    if node.type == "paragraph":
        return
    if node.type == "bulletList" and node.attrs.pop("_tasks", False):
        if node.content and all(item.type == "taskItem" for item in node.content):
            node.type = "taskList"
    if node.type in ("bulletList", "orderedList", "taskList"):
        for item in node.content:
            _finish_item(item, task=node.type == "taskList")
    node.content = _split_images(node.content)
    if node.type in _NEEDS_PARAGRAPH and not node.content:
        node.content.append(Node("paragraph"))
    if node.type in ("listItem", "taskItem") and node.content[0].type != "paragraph":
        node.content.insert(0, Node("paragraph"))
    if node.type in ("tableHeader", "tableCell") and not node.content[0].type == "paragraph":
        node.content = [Node("paragraph", content=node.content)]


def _finish_item(item: Node, *, task: bool) -> None:
    checked = False
    first = item.content[0] if item.content else None
    if (
        first is not None
        and first.type == "paragraph"
        and first.content
        and first.content[0].type == "_checkbox"
    ):
        checked = first.content[0].attrs["checked"] is True
        first.content.pop(0)
        if first.content and first.content[0].type == "text":
            text = first.content[0]
            first.content[0] = Node.of_text(
                text.text[1:] if text.text.startswith(" ") else text.text, text.marks
            )
            if not first.content[0].text:
                first.content.pop(0)
        if not task:  # a task item in a list that is not all tasks: its box stays text
            first.content.insert(0, Node.of_text("[x] " if checked else "[ ] "))
    if task:
        item.type = "taskItem"
        item.attrs["checked"] = checked
    else:
        item.type = "listItem"


def _split_images(nodes: list[Node]) -> list[Node]:
    """Images are blocks in Tiptap: a paragraph holding one becomes paragraph, image,
    paragraph (without the empty or blank ones)."""
    out: list[Node] = []
    for node in nodes:
        if node.type != "paragraph" or not any(child.type == "image" for child in node.content):
            out.append(node)
            continue
        run: list[Node] = []
        for child in [*node.content, Node("image")]:
            if child.type != "image":
                run.append(child)
                continue
            if any(c.type != "text" or c.text.strip() for c in run):
                out.append(Node("paragraph", content=_trimmed(run)))
            run = []
            if child.attrs:
                out.append(child)
    return out


def _trimmed(run: list[Node]) -> list[Node]:
    """A paragraph cut next to an image: without the spaces at its new ends."""
    if run and run[0].type == "text":
        run[0] = Node.of_text(run[0].text.lstrip(), run[0].marks)
    if run and run[-1].type == "text":
        run[-1] = Node.of_text(run[-1].text.rstrip(), run[-1].marks)
    return [node for node in run if node.type != "text" or node.text]
