"""`Node` → Markdown (CommonMark with the GFM tables, task lists and strikethrough).

The output is the normal form that `markdown_in.parse_markdown` reads back into the same
page: `-` bullets (`*` for a list right after another, so the two stay two lists), numbered
items counted from the list's start, two-space-per-level indentation under the marker, `**`
bold, `*` italic, `~~` strike, backtick code spans, fenced code blocks, `---` rules, `\\` at
the end of a line for a hard break, `@name@site` for a mention, tables with a header row.
Text is escaped wherever it could read as syntax. What Markdown cannot say is left out:
underline (plain text), empty paragraphs, several paragraphs in one table cell (joined).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .model import MAX_DEPTH, Mark, Node, mention_text

__all__ = ["MENTION_ID", "to_markdown"]

# A person id as a mention names it: name@site (people.py's names, federation's site ids).
MENTION_ID = r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?@[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?"
_MENTION_ID = re.compile(MENTION_ID)

_ESCAPED = re.compile(r"([\\`*_\[\]<~|])")
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
_MENTION_LIKE = re.compile(r"@(?=" + MENTION_ID + ")")
_LINE_START = re.compile(r"^([#>+=-])")
_ORDERED_START = re.compile(r"^(\d+)([.)])")
_BACKTICKS = re.compile(r"`+")
_URL_NEEDS_BRACKETS = re.compile(r"[\s()<>]")

_DELIMITERS = {"bold": "**", "italic": "*", "strike": "~~"}
_MARKDOWN_MARKS = frozenset({"link", "bold", "italic", "strike", "code"})
_LISTS = {"bulletList": "bullet", "taskList": "bullet", "orderedList": "ordered"}


def to_markdown(doc: Node) -> str:
    text = "\n".join(_blocks(doc.content, 1)).strip("\n")
    return text + "\n" if text else ""


# -- blocks --------------------------------------------------------------------------------


def _blocks(nodes: list[Node], depth: int, *, in_item: bool = False) -> list[str]:
    lines: list[str] = []
    previous: Node | None = None
    for node in _as_blocks(nodes):
        rendered = _block(node, depth, alternate=_same_list_family(previous, node))
        if not rendered:
            continue
        if lines:
            tight = in_item and previous is not None and previous.type == "paragraph" and node.type in _LISTS
            if not tight:
                lines.append("")
        lines.extend(rendered)
        previous = node
    return lines


def _as_blocks(nodes: list[Node]) -> Iterator[Node]:
    """Inline content where blocks belong (a hostile or foreign document) reads as paragraphs."""
    run: list[Node] = []
    for node in nodes:
        if _is_inline(node):
            run.append(node)
            continue
        if run:
            yield Node("paragraph", content=run)
            run = []
        yield node
    if run:
        yield Node("paragraph", content=run)


def _is_inline(node: Node) -> bool:
    return node.type in ("text", "hardBreak", "mention")


def _same_list_family(previous: Node | None, node: Node) -> bool:
    return previous is not None and _LISTS.get(previous.type, "") == _LISTS.get(node.type) is not None


def _block(node: Node, depth: int, *, alternate: bool = False) -> list[str]:
    if depth > MAX_DEPTH:
        return []
    kind = node.type
    if kind == "paragraph":
        return _paragraph_lines(_inline(node.content))
    if kind == "heading":
        level = min(max(_int(node.attr("level"), 1), 1), 6)
        text = _inline(node.content, single_line=True)
        if text.endswith("#"):
            text = text[:-1] + "\\#"
        return [("#" * level + " " + text).rstrip()]
    if kind == "blockquote":
        inner = _blocks(node.content, depth + 1) or [""]
        return [">" if not line else "> " + line for line in inner]
    if kind in _LISTS:
        return _list(node, depth, alternate)
    if kind == "codeBlock":
        return _code_block(node)
    if kind == "horizontalRule":
        return ["---"]
    if kind == "image":
        return [_image(node)]
    if kind == "table":
        return _table(node)
    if any(_is_inline(child) for child in node.content):
        return _paragraph_lines(_inline(node.content))
    return _blocks(node.content, depth + 1)


def _paragraph_lines(text: str) -> list[str]:
    if not text.strip():
        return []
    lines = []
    raw = text.split("\n")
    for index, line in enumerate(raw):
        # Spaces at either end of a line do not survive Markdown (four at the start would
        # even make it code); every line but the last ends with a hard break's backslash.
        line = line.lstrip(" \t")
        line = line.rstrip(" \t") if index == len(raw) - 1 else line[:-1].rstrip(" \t") + "\\"
        line = _LINE_START.sub(r"\\\1", line)
        line = _ORDERED_START.sub(r"\1\\\2", line)
        lines.append(line)
    return lines


def _list(node: Node, depth: int, alternate: bool) -> list[str]:
    lines: list[str] = []
    ordered = node.type == "orderedList"
    start = _int(node.attr("start"), 1)
    for index, item in enumerate(node.content):
        if ordered:
            marker = f"{start + index}{')' if alternate else '.'}"
        else:
            marker = "*" if alternate else "-"
        body = _blocks(item.content, depth + 2, in_item=True)
        if item.type == "taskItem":
            box = "[x]" if item.attr("checked") is True else "[ ]"
            first_is_text = bool(item.content) and item.content[0].type == "paragraph" and bool(body)
            body = [f"{box} {body[0]}", *body[1:]] if first_is_text else [box, *body]
        indent = " " * (len(marker) + 1)
        if not body:
            lines.append(marker)
            continue
        lines.append(f"{marker} {body[0]}")
        lines.extend(indent + line if line else "" for line in body[1:])
    return lines


def _code_block(node: Node) -> list[str]:
    code = "".join(child.text for child in node.content if child.type == "text")
    runs = [len(run) for run in _BACKTICKS.findall(code)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    language = str(node.attr("language") or "")
    if not re.fullmatch(r"[\w+#.-]*", language):
        language = ""
    return [fence + language, *(code.split("\n") if code else []), fence]


def _table(node: Node) -> list[str]:
    rows = [
        [_inline(_cell_inline(cell), single_line=True).strip() for cell in row.content]
        for row in node.content
        if row.type == "tableRow"
    ]
    if not rows:
        return []
    width = max(1, max(len(row) for row in rows))
    lines = []
    for index, row in enumerate(rows):
        cells = row + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
        if index == 0:
            lines.append("| " + " | ".join(["---"] * width) + " |")
    return lines


def _cell_inline(cell: Node) -> list[Node]:
    """A cell's paragraphs as one line (Markdown cells hold inline content only)."""
    out: list[Node] = []
    for block in cell.content:
        inline = block.content if not _is_inline(block) else [block]
        if out and inline:
            out.append(Node.of_text(" "))
        out.extend(inline)
    return out


def _image(node: Node) -> str:
    alt = _ESCAPED.sub(r"\\\1", str(node.attr("alt") or ""))
    return f"![{alt}]({_url(str(node.attr('src') or ''))})"


def _url(url: str) -> str:
    url = url.replace("\n", "").replace("\r", "")
    if _URL_NEEDS_BRACKETS.search(url):
        return "<" + url.replace("<", "%3C").replace(">", "%3E") + ">"
    return url


def _int(value: object, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return default
    try:
        return int(float(value))
    except (ValueError, OverflowError):
        return default


# -- inline content ------------------------------------------------------------------------


def _inline(nodes: list[Node], *, single_line: bool = False) -> str:
    return _InlineWriter(single_line).write(nodes)


def _escape(text: str) -> str:
    text = _ESCAPED.sub(r"\\\1", text)
    text = _ENTITY.sub(r"\\&", text)
    return _MENTION_LIKE.sub(r"\\@", text)


class _InlineWriter:
    """Marks open and close around text so that each character keeps its marks: a mark that
    goes on stays open, whitespace moves outside delimiters (`** a**` would not parse as
    bold), and code spans take their text verbatim."""

    def __init__(self, single_line: bool) -> None:
        self.single_line = single_line
        self.out: list[str] = []
        self.active: list[Mark] = []
        self.pending_space = ""
        self.code: list[str] | None = None  # the text of the open code span

    def write(self, nodes: list[Node]) -> str:
        for node in _merge_text(nodes):
            if node.type == "text":
                self._text(node)
            else:
                self._switch([m for m in self.active if m.type != "code"])
                self._flush_space()
                self.out.append(self._inline_node(node))
        self._switch([])
        self._flush_space()
        return "".join(self.out)

    def _text(self, node: Node) -> None:
        text = node.text.replace("\r", "").replace("\n", " ")
        marks = [m for m in node.marks if m.type in _MARKDOWN_MARKS]
        if any(m.type == "code" for m in marks):
            self._switch(marks)
            assert self.code is not None
            self.code.append(text)
            return
        core = text.strip(" \t")
        if not core:  # whitespace keeps the marks around it, but is not code
            if self.code is not None:
                self._switch([m for m in self.active if m.type != "code"])
            self.pending_space += text
            return
        lead = text[: len(text) - len(text.lstrip(" \t"))]
        trail = text[len(text.rstrip(" \t")) :]
        self._switch(marks, lead=lead)
        self.out.append(_escape(core))
        self.pending_space = trail

    def _switch(self, wanted: list[Mark], lead: str = "") -> None:
        keep = 0
        while keep < len(self.active) and self.active[keep] in wanted:
            keep += 1
        for mark in reversed(self.active[keep:]):
            self._close(mark)
        self.active = self.active[:keep]
        self._flush_space()
        self.out.append(lead)
        for mark in wanted:
            if mark not in self.active:
                self._open(mark)
                self.active.append(mark)

    def _flush_space(self) -> None:
        if self.pending_space:
            self.out.append(self.pending_space)
            self.pending_space = ""

    def _open(self, mark: Mark) -> None:
        if mark.type == "code":
            self.code = []
        elif mark.type == "link":
            self.out.append("[")
        else:
            self.out.append(_DELIMITERS[mark.type])

    def _close(self, mark: Mark) -> None:
        if mark.type == "code":
            self.out.append(_code_span("".join(self.code or [])))
            self.code = None
        elif mark.type == "link":
            self.out.append(f"]({_url(str(mark.attr('href') or ''))})")
        else:
            self.out.append(_DELIMITERS[mark.type])

    def _inline_node(self, node: Node) -> str:
        if node.type == "hardBreak":
            return " " if self.single_line else "\\\n"
        if node.type == "mention":
            ident = str(node.attr("id") or "")
            return "@" + ident if _MENTION_ID.fullmatch(ident) else _escape(mention_text(node))
        if node.type == "image":
            return _image(node)
        return _escape("".join(child.text for child in node.content if child.type == "text"))


def _merge_text(nodes: list[Node]) -> list[Node]:
    out: list[Node] = []
    for node in nodes:
        if node.type == "text" and out and out[-1].type == "text" and out[-1].marks == node.marks:
            out[-1] = Node.of_text(out[-1].text + node.text, node.marks)
        elif node.type != "text" or node.text:
            out.append(node)
    return out


def _code_span(code: str) -> str:
    runs = {len(run) for run in _BACKTICKS.findall(code)}
    ticks = 1
    while ticks in runs:
        ticks += 1
    fence = "`" * ticks
    if code.startswith(("`", " ")) or code.endswith(("`", " ")):
        if code.strip(" "):
            code = f" {code} "
    return f"{fence}{code}{fence}"
