"""Rendering what y-prosemirror writes (marks as formatting attributes, hashed overlapping
marks, numbers from JavaScript) to Markdown, sanitized HTML and text; and documents a hostile
client wrote (unknown nodes, embeds, object attributes, nesting without end) render without
an error and without markup of their own."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pycrdt

from crdt.pages import read_page, render_state, to_html, to_markdown, to_text


def page(build: Any) -> pycrdt.Doc[Any]:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    fragment = doc.get("default", type=pycrdt.XmlFragment)
    build(fragment)
    return doc


def paragraph(fragment: pycrdt.XmlFragment, *runs: tuple[str, dict[str, Any] | None]) -> None:
    p = fragment.children.append(pycrdt.XmlElement("paragraph"))
    text = p.children.append(pycrdt.XmlText())
    for value, attrs in runs:
        text.insert(len(text), value, attrs)


def test_y_prosemirror_marks() -> None:
    doc = page(
        lambda f: paragraph(
            f,
            ("plain ", None),
            ("bold", {"bold": {}}),
            (" ", None),
            ("link", {"link": {"href": "https://example.com", "target": "_blank", "rel": None}}),
            (" ", None),
            ("over", {"comment--AbCd1234": {"id": 7}}),  # an overlapping mark, hashed name
        )
    )
    content = read_page(doc)
    assert to_markdown(content) == "plain **bold** [link](https://example.com) over\n"
    assert to_html(content) == (
        '<p>plain <strong>bold</strong> <a href="https://example.com" '
        'rel="noopener noreferrer nofollow">link</a> over</p>'
    )
    assert to_text(content) == "plain bold link over\n"


def test_numbers_from_javascript_and_booleans() -> None:
    def build(f: pycrdt.XmlFragment) -> None:
        h = f.children.append(pycrdt.XmlElement("heading", {"level": 3.0}))
        h.children.append(pycrdt.XmlText("Three"))
        tasks = f.children.append(pycrdt.XmlElement("taskList"))
        item = tasks.children.append(pycrdt.XmlElement("taskItem", {"checked": True}))
        p = item.children.append(pycrdt.XmlElement("paragraph"))
        p.children.append(pycrdt.XmlText("done"))

    content = read_page(page(build))
    assert to_markdown(content) == "### Three\n\n- [x] done\n"
    assert to_html(content) == (
        '<h3>Three</h3><ul data-type="taskList"><li data-type="taskItem" data-checked="true">'
        '<input type="checkbox" disabled="" checked=""><p>done</p></li></ul>'
    )


def test_html_is_sanitized() -> None:
    def build(f: pycrdt.XmlFragment) -> None:
        paragraph(
            f,
            ("<script>alert(1)</script>", None),
            ("x", {"link": {"href": "javascript:alert(1)"}}),
            ("y", {"link": {"href": '" onmouseover="alert(1)'}}),
        )
        f.children.append(pycrdt.XmlElement("image", {"src": "javascript:alert(1)", "alt": '"><b>'}))
        f.children.append(pycrdt.XmlElement("codeBlock", {"language": '"><script>'}))
        f.children.append(pycrdt.XmlElement("script", {"onload": "alert(1)"}))

    html = to_html(read_page(page(build)))
    tags = Tags()
    tags.feed(html)
    assert {tag for tag, _ in tags.seen} <= {"p", "a", "img", "pre", "code"}
    for _tag, attrs in tags.seen:
        assert not any(name.startswith("on") for name, _ in attrs)
        assert not any((value or "").startswith("javascript:") for _, value in attrs)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, attrs))


def test_hostile_documents_render() -> None:
    def build(f: pycrdt.XmlFragment) -> None:
        parent: Any = f
        for _ in range(500):  # far deeper than anything renders
            parent = parent.children.append(pycrdt.XmlElement("blockquote"))
        parent.children.append(pycrdt.XmlText("bottom"))
        odd = f.children.append(pycrdt.XmlElement("whatever", {"x": "1"}))
        text = odd.children.append(pycrdt.XmlText("kept text"))
        text.insert_embed(0, {"an": "embed"})
        f.children.append(pycrdt.XmlElement("heading", {"level": "not a number"}))
        f.children.append(pycrdt.XmlElement("orderedList", {"start": "x"}))

    doc = page(build)
    content = read_page(doc)
    for render in (to_markdown, to_html, to_text):
        assert "kept text" in render(content)
        assert "bottom" not in render(content)
    assert render_state(doc.get_update(), "text") == to_text(content)


def test_an_empty_document() -> None:
    empty: pycrdt.Doc[Any] = pycrdt.Doc()
    assert render_state(empty.get_update(), "markdown") == ""
    assert render_state(b"", "html") == ""
