"""`Node` → HTML, sanitized: safe to put into any page of the intranet.

The HTML is built with every text and attribute value escaped, and then cleaned by nh3 (the
Ammonia sanitizer) with an allowlist of the tags and attributes this module writes, so a
page's content can never bring a script, an event handler, a `javascript:` URL or a style
into a reader's browser, even if this module had a bug. Links get
`rel="noopener noreferrer nofollow"`. The markup follows what Tiptap renders (`data-type`
on task lists and mentions) so the web app can style both the same way.
"""

from __future__ import annotations

from html import escape

import nh3

from .model import MAX_DEPTH, Mark, Node, mention_text

__all__ = ["to_html"]

_SIMPLE = {
    "paragraph": "p",
    "blockquote": "blockquote",
    "bulletList": "ul",
    "listItem": "li",
    "table": "table",
    "tableRow": "tr",
}
_MARK_TAGS = {"bold": "strong", "italic": "em", "strike": "s", "underline": "u", "code": "code"}

_TAGS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "li", "pre", "code", "hr",
    "br", "img", "table", "tbody", "tr", "th", "td", "strong", "em", "s", "u", "a", "span", "input",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href"},
    "img": {"src", "alt"},
    "ol": {"start"},
    "ul": {"data-type"},
    "li": {"data-type", "data-checked"},
    "code": {"class"},
    "span": {"data-type", "data-id", "data-label"},
    "th": {"colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
    "input": {"checked", "disabled"},
}
_ATTRIBUTE_VALUES = {"input": {"type": {"checkbox"}}}
_LINK_REL = "noopener noreferrer nofollow"
_URL_SCHEMES = {"http", "https", "mailto"}


def to_html(doc: Node) -> str:
    raw = "".join(_blocks(doc.content, 1))
    return nh3.clean(
        raw,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        tag_attribute_values=_ATTRIBUTE_VALUES,
        link_rel=_LINK_REL,
        url_schemes=_URL_SCHEMES,
        strip_comments=True,
    )


def _attr(name: str, value: object) -> str:
    return f' {name}="{escape(str(value), quote=True)}"'


def _blocks(nodes: list[Node], depth: int) -> list[str]:
    out: list[str] = []
    inline: list[Node] = []
    for node in nodes:
        if node.type in ("text", "hardBreak", "mention"):
            inline.append(node)
            continue
        if inline:
            out.append(f"<p>{_inline(inline)}</p>")
            inline = []
        out.append(_block(node, depth))
    if inline:
        out.append(f"<p>{_inline(inline)}</p>")
    return out


def _block(node: Node, depth: int) -> str:
    if depth > MAX_DEPTH:
        return ""
    kind = node.type

    def inner() -> str:
        return "".join(_blocks(node.content, depth + 1))

    if kind == "paragraph":
        return f"<p>{_inline(node.content)}</p>"
    if kind == "heading":
        level = node.attr("level", 1)
        n = (
            min(max(int(level), 1), 6)
            if isinstance(level, int | float) and not isinstance(level, bool)
            else 1
        )
        return f"<h{n}>{_inline(node.content)}</h{n}>"
    if kind in _SIMPLE:
        tag = _SIMPLE[kind]
        body = f"<tbody>{inner()}</tbody>" if kind == "table" else inner()
        return f"<{tag}>{body}</{tag}>"
    if kind == "orderedList":
        start = node.attr("start", 1)
        attrs = _attr("start", int(start)) if isinstance(start, int | float) and start != 1 else ""
        return f"<ol{attrs}>{inner()}</ol>"
    if kind == "taskList":
        return f'<ul data-type="taskList">{inner()}</ul>'
    if kind == "taskItem":
        checked = node.attr("checked") is True
        box = '<input type="checkbox" disabled' + (" checked" if checked else "") + ">"
        return f'<li data-type="taskItem"{_attr("data-checked", str(checked).lower())}>{box}{inner()}</li>'
    if kind in ("tableHeader", "tableCell"):
        tag = "th" if kind == "tableHeader" else "td"
        attrs = "".join(
            _attr(name, int(value))
            for name in ("colspan", "rowspan")
            if isinstance(value := node.attr(name, 1), int | float)
            and not isinstance(value, bool)
            and value > 1
        )
        return f"<{tag}{attrs}>{inner()}</{tag}>"
    if kind == "codeBlock":
        code = "".join(child.text for child in node.content if child.type == "text")
        language = node.attr("language")
        attrs = _attr("class", f"language-{language}") if isinstance(language, str) and language else ""
        return f"<pre><code{attrs}>{escape(code, quote=False)}</code></pre>"
    if kind == "horizontalRule":
        return "<hr>"
    if kind == "image":
        return _image(node)
    return inner()


def _image(node: Node) -> str:
    alt = node.attr("alt")
    return "<img" + _attr("src", node.attr("src") or "") + (_attr("alt", alt) if alt else "") + ">"


def _inline(nodes: list[Node]) -> str:
    out: list[str] = []
    active: list[Mark] = []
    for node in nodes:
        wanted = list(node.marks) if node.type == "text" else active
        keep = 0
        while keep < len(active) and keep < len(wanted) and active[keep] == wanted[keep]:
            keep += 1
        for mark in reversed(active[keep:]):
            out.append(_close(mark))
        for mark in wanted[keep:]:
            out.append(_open(mark))
        active = list(wanted)
        out.append(_inline_node(node))
    for mark in reversed(active):
        out.append(_close(mark))
    return "".join(out)


def _inline_node(node: Node) -> str:
    if node.type == "text":
        return escape(node.text, quote=False)
    if node.type == "hardBreak":
        return "<br>"
    if node.type == "mention":
        attrs = _attr("data-type", "mention") + _attr("data-id", node.attr("id") or "")
        label = node.attr("label")
        if label:
            attrs += _attr("data-label", label)
        return f"<span{attrs}>{escape(mention_text(node), quote=False)}</span>"
    if node.type == "image":
        return _image(node)
    return "".join(_inline_node(child) for child in node.content if child.type == "text")


def _open(mark: Mark) -> str:
    if mark.type == "link":
        return "<a" + _attr("href", mark.attr("href") or "") + ">"
    tag = _MARK_TAGS.get(mark.type)
    return f"<{tag}>" if tag else ""


def _close(mark: Mark) -> str:
    if mark.type == "link":
        return "</a>"
    tag = _MARK_TAGS.get(mark.type)
    return f"</{tag}>" if tag else ""
