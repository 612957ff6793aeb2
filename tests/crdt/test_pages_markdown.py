"""Markdown ⇄ page content: the fixture files round-trip exactly through a real pycrdt
`XmlFragment`, other spellings normalise to the same page, text survives escaping, and
Markdown bombs are refused before they cost anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.pages import (
    MAX_BYTES,
    MAX_NODES,
    Node,
    PageContentError,
    parse_markdown,
    read_page,
    replace_content,
    replacement_update,
    structure,
    to_markdown,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "markdown"


def through_yjs(markdown: str) -> Node:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    replace_content(doc, parse_markdown(markdown))
    return read_page(doc)


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.md")))
def test_fixture_round_trips_exactly(name: str) -> None:
    source = (FIXTURES / name).read_text()
    assert to_markdown(through_yjs(source)) == source


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("* a\n+ b\n", "- a\n\n* b\n"),  # two lists: CommonMark splits on a marker change
        ("__bold__ and _it_\n", "**bold** and *it*\n"),
        ("soft\nbreak\n", "soft break\n"),
        ("line  \nbreak\n", "line\\\nbreak\n"),
        ("Title\n=====\n", "# Title\n"),
        ("***\n", "---\n"),
        ("    indented code\n", "```\nindented code\n```\n"),
        ("~~~js\nx\n~~~\n", "```js\nx\n```\n"),
        ("<https://example.com>\n", "[https://example.com](https://example.com)\n"),
        ("<b>raw html</b>\n", "\\<b>raw html\\</b>\n"),
        ("- [X] upper\n", "- [x] upper\n"),
        ("1) one\n", "1. one\n"),
        ("| a |\n|:--|\n| b |\n", "| a |\n| --- |\n| b |\n"),
        ("![](x.png) and text\n", "![](x.png)\n\nand text\n"),
        ("", ""),
        ("   \n\n", ""),
    ],
)
def test_other_spellings_normalise(written: str, normal: str) -> None:
    assert to_markdown(through_yjs(written)) == normal
    assert to_markdown(through_yjs(normal)) == normal  # the normal form is a fixed point


def test_the_tiptap_shape() -> None:
    page = parse_markdown("- [x] done\n- [ ] open\n\n> quote\n\n| h |\n| --- |\n|  |\n\n- - deep\n")
    assert structure(page) == {
        "type": "doc",
        "content": [
            {"type": "taskList", "content": [
                {"type": "taskItem", "attrs": {"checked": True},
                 "content": [{"type": "paragraph", "content": [{"text": "done"}]}]},
                {"type": "taskItem", "attrs": {"checked": False},
                 "content": [{"type": "paragraph", "content": [{"text": "open"}]}]},
            ]},
            {"type": "blockquote", "content": [{"type": "paragraph", "content": [{"text": "quote"}]}]},
            {"type": "table", "content": [
                {"type": "tableRow", "content": [
                    {"type": "tableHeader", "content": [{"type": "paragraph", "content": [{"text": "h"}]}]}]},
                {"type": "tableRow", "content": [{"type": "tableCell", "content": [{"type": "paragraph"}]}]},
            ]},
            # A list item starts with a paragraph (the schema's "paragraph block*").
            {"type": "bulletList", "content": [{"type": "listItem", "content": [
                {"type": "paragraph"},
                {"type": "bulletList", "content": [
                    {"type": "listItem", "content": [{"type": "paragraph", "content": [{"text": "deep"}]}]}]},
            ]}]},
        ],
    }  # fmt: skip


def test_mentions_and_their_escapes() -> None:
    page = parse_markdown("hi @ann@amsterdam, mail bob@corp.example, not \\@cem@berlin\n")
    paragraph = page.content[0].content
    assert [n.type for n in paragraph] == ["text", "mention", "text"]
    assert paragraph[1].attrs["id"] == "ann@amsterdam"
    assert paragraph[2].text == ", mail bob@corp.example, not @cem@berlin"
    assert to_markdown(page) == "hi @ann@amsterdam, mail bob@corp.example, not \\@cem@berlin\n"


def test_unsafe_links_are_not_links() -> None:
    page = parse_markdown("[x](javascript:alert(1)) ![y](data:text/html,boom)\n")
    marks = [m for n in page.content[0].content for m in n.marks]
    assert not any(m.type == "link" for m in marks)
    assert all(n.type != "image" for n in page.content)


def test_the_replacement_is_one_update_on_the_old_state() -> None:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    replace_content(doc, parse_markdown("# old\n"))
    update = replacement_update(doc.get_update(), parse_markdown("new **text**\n"))
    doc.apply_update(update)
    assert to_markdown(read_page(doc)) == "new **text**\n"


# -- text survives escaping --------------------------------------------------------------

_TEXT = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters="\r\n"
    ),
    min_size=1,
    max_size=40,
).map(lambda s: " ".join(s.split()))


@settings(max_examples=400, deadline=None)
@given(_TEXT)
def test_any_text_survives(text: str) -> None:
    if not text:
        return
    page = Node("doc", content=[Node("paragraph", content=[Node.of_text(text)])])
    back = parse_markdown(to_markdown(page))
    assert structure(back) == structure(page)


_MARKS = st.lists(st.sampled_from(["bold", "italic", "strike", "code"]), unique=True, max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(alphabet="abc xyz*_`", min_size=1, max_size=6), _MARKS), min_size=1, max_size=6
    )
)
def test_marked_text_survives(runs: list[tuple[str, list[str]]]) -> None:
    from crdt.pages import Mark

    nodes = []
    for text, marks in runs:
        core = " ".join(text.split())
        if core:
            nodes.append(Node.of_text(core, tuple(Mark(m) for m in marks)))
            nodes.append(Node.of_text(" "))
    if not nodes:
        return
    nodes.pop()
    page = Node("doc", content=[Node("paragraph", content=nodes)])
    once = to_markdown(page)
    assert to_markdown(parse_markdown(once)) == once  # stable after one pass
    assert _plain(parse_markdown(once)) == _plain(page)


def _plain(page: Node) -> str:
    return "".join(n.text for n in page.content[0].content if n.type == "text")


# -- bombs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bomb",
    [
        "".join("  " * i + "- x\n" for i in range(700)),  # nested lists, indented (10,000: 100 MB)
        ">" * 10_000 + " deep\n",
        "- " * 10_000 + "x\n",
    ],
)
def test_deep_markdown_is_refused(bomb: str) -> None:
    with pytest.raises(PageContentError) as refused:
        parse_markdown(bomb)
    assert refused.value.code in ("too_deep", "too_large")


def test_big_markdown_is_refused() -> None:
    with pytest.raises(PageContentError) as refused:
        parse_markdown("a" * (MAX_BYTES + 1))
    assert refused.value.code == "too_large"


def test_many_nodes_are_refused() -> None:
    with pytest.raises(PageContentError) as refused:
        parse_markdown("- x\n" * (MAX_NODES // 3 + 10))
    assert refused.value.code == "too_large"


def test_what_is_accepted_is_not_cut() -> None:
    source = "".join("  " * i + f"- level {i}\n" for i in range(12))
    assert to_markdown(parse_markdown(source)) == source
