"""`Node` → plain text: what search indexes and notifications quote. One line per paragraph,
heading, list item or table row (cells separated by a tab), a blank line between top-level
blocks, code as it is, mentions as `@name@site`, images by their alt text."""

from __future__ import annotations

from .model import MAX_DEPTH, Node, mention_text

__all__ = ["to_text"]

_LINE_BLOCKS = frozenset({"paragraph", "heading"})


def to_text(doc: Node) -> str:
    blocks = ["\n".join(_lines(block, 1)) for block in doc.content]
    text = "\n\n".join(block for block in blocks if block.strip())
    return text + "\n" if text else ""


def _lines(node: Node, depth: int) -> list[str]:
    if depth > MAX_DEPTH:
        return []
    if node.type in _LINE_BLOCKS or node.type in ("text", "mention", "hardBreak"):
        line = _inline([node] if node.type != "paragraph" and node.type != "heading" else node.content)
        return line.split("\n") if line.strip() else []
    if node.type == "codeBlock":
        return _inline(node.content).split("\n")
    if node.type == "tableRow":
        return ["\t".join(" ".join(_flat(cell, depth + 1)) for cell in node.content)]
    if node.type == "image":
        alt = node.attr("alt")
        return [str(alt)] if alt else []
    lines: list[str] = []
    for child in node.content:
        lines.extend(_lines(child, depth + 1))
    return lines


def _flat(node: Node, depth: int) -> list[str]:
    return [line for line in _lines(node, depth) if line]


def _inline(nodes: list[Node]) -> str:
    out = []
    for node in nodes:
        if node.type == "text":
            out.append(node.text)
        elif node.type == "hardBreak":
            out.append("\n")
        elif node.type == "mention":
            out.append(mention_text(node))
        elif node.type == "image" and node.attr("alt"):
            out.append(str(node.attr("alt")))
        else:
            out.append(_inline(node.content))
    return "".join(out)
