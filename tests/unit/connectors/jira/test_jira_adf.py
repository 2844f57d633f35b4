"""ADF <-> Markdown: round trips both ways over a corpus and generated documents, Jira's ADF
rules on everything produced, and hostile input (size, depth)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator

from connectors.jira.adf import (
    MAX_MARKDOWN_CHARS,
    adf_text,
    adf_to_markdown,
    markdown_to_adf,
    text_adf,
)
from sandbox.contracts import specs_dir
from sandbox.contracts.jira import adf_problems

pytestmark = pytest.mark.unit


#: Where Atlassian's ADF JSON Schema goes in the specs dir (`dist/json-schema/v1/full.json` of
#: the npm package @atlaskit/adf-schema, Apache-2.0), when it is there.
ADF_SCHEMA = "jira/adf-schema.v1.full.json"


@cache
def adf_schema() -> Draft4Validator | None:
    path = specs_dir() / ADF_SCHEMA
    return Draft4Validator(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def valid(doc: Any) -> Any:
    """`doc`, after checking it is ADF Jira takes: against Atlassian's ADF JSON Schema where the
    specs dir has it, and always against the fake Jira's checks (non-empty text, marks, what may
    nest in what)."""
    assert adf_problems(doc) == [], json.dumps(doc)
    schema = adf_schema()
    if schema is not None:
        assert [error.message for error in schema.iter_errors(doc)] == [], json.dumps(doc)
    return doc


def text(value: str, *marks: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": value}
    if marks:
        node["marks"] = list(marks)
    return node


def para(*content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "paragraph", "content": list(content)}


def doc(*content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "doc", "version": 1, "content": list(content)}


def item(*content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "listItem", "content": list(content)}


STRONG, EM, STRIKE, CODE = ({"type": kind} for kind in ("strong", "em", "strike", "code"))


def link(href: str) -> dict[str, Any]:
    return {"type": "link", "attrs": {"href": href}}


#: Markdown as adf_to_markdown writes it: md -> adf -> md gives it back unchanged.
MARKDOWN_CORPUS = [
    "Plain words.",
    "Hello **bold**, *italic*, ~~struck~~ and `code`.",
    "A [link](https://example.com/a?b=1&c=2) and **a [bold link](https://example.com) in bold**.",
    "`code` in a [`link`](https://example.com/x).",
    "***both at once***",
    "First line\\\nsecond line\\\nthird",
    "# Title\n\n## Second *level*\n\n###### Sixth",
    "Two\n\nparagraphs",
    "- one\n- two\n  - nested\n    - deeper\n  - back\n- three",
    "1. first\n2. second\n   1. inner\n3. third",
    "7. seven\n8. eight",
    "- a list\n\n* right after another",
    "1. ordered\n\n1) and another",
    "- an item\n\n  with two paragraphs",
    "- an item with code\n\n  ```sh\n  make test\n  ```",
    "```python\ndef f():\n    return '`'\n```",
    "````\na fence with ``` inside\n````",
    "```\n```",
    "> a quote\n>\n> - with a list\n>\n> ```\n> and code\n> ```",
    "before\n\n---\n\nafter",
    "snake_case stays, 2 \\* 3 is escaped, \\_so is this\\_, and \\<html> too",
    "\\# not a heading",
    "1\\. not a list, and 2. mid-line is fine",
    "\\- not an item",
    "A ``tick`tick`` span, `` `edge` `` ones padded",
    "Ünïcödé ✓ and emoji 🎉",
]


@pytest.mark.parametrize("markdown", MARKDOWN_CORPUS)
def test_markdown_survives_a_round_trip_through_adf(markdown: str) -> None:
    adf = valid(markdown_to_adf(markdown))
    assert adf_to_markdown(adf) == markdown


#: ADF as markdown_to_adf writes it: adf -> md -> adf gives it back unchanged.
ADF_CORPUS = [
    doc(para(text("Plain words."))),
    doc(para(text("a "), text("b", STRONG), text(" "), text("c", EM), text(" "), text("d", STRIKE), text("!"))),
    doc(para(text("bold ", STRONG), text("link", link("https://x.example/p"), STRONG), text(" more", STRONG))),
    doc(para(text("x", link("https://x.example/a_(b)")))),
    doc(para(text("call "), text("f(`x`)", CODE), text(" now"))),
    doc(para(text("linked code", link("https://x.example"), CODE))),
    doc(para(text("em", STRONG, EM), text("only strong", STRONG))),
    doc(para(text("line one"), {"type": "hardBreak"}, text("line two"))),
    doc({"type": "heading", "attrs": {"level": 3}, "content": [text("Heading "), text("x", CODE)]}),
    doc(
        {
            "type": "bulletList",
            "content": [
                item(para(text("one"))),
                item(para(text("two")), {"type": "bulletList", "content": [item(para(text("nested")))]}),
            ],
        }
    ),
    doc({"type": "orderedList", "attrs": {"order": 5}, "content": [item(para(text("five"))), item(para(text("six")))]}),
    doc({"type": "bulletList", "content": [item(para())]}),
    doc(
        {"type": "bulletList", "content": [item(para(text("a")))]},
        {"type": "bulletList", "content": [item(para(text("b")))]},
        {"type": "bulletList", "content": [item(para(text("c")))]},
    ),
    doc({"type": "codeBlock", "attrs": {"language": "json"}, "content": [text('{"a": [1, 2]}\n\n  indented')]}),
    doc({"type": "codeBlock", "content": []}),
    doc({"type": "blockquote", "content": [para(text("quoted")), para(text("twice"))]}),
    doc(para(text("above")), {"type": "rule"}, para(text("below"))),
    doc(para(text("*not emphasis* and [not a link](x) and `not code`"))),
    doc(para(text("1. not a list")), para(text("# not a heading")), para(text("> not a quote"))),
    doc(para(text("back\\slash and a_b_c and 5 < 6 & 7 > 3 and &amp; literally"))),
    doc(para()),
]


@pytest.mark.parametrize("adf", ADF_CORPUS, ids=[f"adf{n}" for n in range(len(ADF_CORPUS))])
def test_adf_survives_a_round_trip_through_markdown(adf: dict[str, Any]) -> None:
    valid(adf)
    assert markdown_to_adf(adf_to_markdown(adf)) == adf


def test_markdown_becomes_the_adf_nodes_and_marks_jira_shows() -> None:
    adf = markdown_to_adf("## Deploy\n\nRun `make` **now**, see [docs](https://d.example).\n\n```sh\nmake\n```")
    assert adf == doc(
        {"type": "heading", "attrs": {"level": 2}, "content": [text("Deploy")]},
        para(
            text("Run "),
            text("make", CODE),
            text(" "),
            text("now", STRONG),
            text(", see "),
            text("docs", link("https://d.example")),
            text("."),
        ),
        {"type": "codeBlock", "attrs": {"language": "sh"}, "content": [text("make")]},
    )


def test_chat_text_keeps_its_line_breaks_with_breaks() -> None:
    assert markdown_to_adf("alice: hi\nbob: hello", breaks=True) == doc(
        para(text("alice: hi"), {"type": "hardBreak"}, text("bob: hello"))
    )
    assert markdown_to_adf("alice: hi\nbob: hello") == doc(para(text("alice: hi bob: hello")))


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        # Jira takes neither a heading nor a rule below the top level, nor a quote in a quote or a list.
        ("> # heading in a quote", doc({"type": "blockquote", "content": [para(text("heading in a quote"))]})),
        ("- # heading in a list", doc({"type": "bulletList", "content": [item(para(text("heading in a list")))]})),
        ("> > deeper", doc({"type": "blockquote", "content": [para(text("deeper"))]})),
        ("- > quoted item", doc({"type": "bulletList", "content": [item(para(text("quoted item")))]})),
        ("- item\n\n  ***", doc({"type": "bulletList", "content": [item(para(text("item")))]})),
        # A list item starting with a list gets the paragraph Jira wants first; code needs none.
        (
            "- - x",
            doc(
                {
                    "type": "bulletList",
                    "content": [item(para(), {"type": "bulletList", "content": [item(para(text("x")))]})],
                }
            ),
        ),
        ("**`code` in bold**", doc(para(text("code", CODE), text(" "), text("in bold", STRONG)))),
        ("![alt text](https://i.example/p.png)", doc(para(text("alt text", link("https://i.example/p.png"))))),
        ("<b>raw html</b>", doc(para(text("<b>raw html</b>")))),
        ("", doc(para())),
    ],
)
def test_what_adf_cannot_hold_degrades_to_what_it_can(markdown: str, expected: dict[str, Any]) -> None:
    assert valid(markdown_to_adf(markdown)) == expected


def test_unknown_adf_nodes_degrade_to_their_text() -> None:
    adf = doc(
        para(
            text("Hi "),
            {"type": "mention", "attrs": {"id": "abc", "text": "@Ada"}},
            text(" "),
            {"type": "emoji", "attrs": {"shortName": ":tada:"}},
            text(" see "),
            {"type": "inlineCard", "attrs": {"url": "https://c.example"}},
        ),
        {"type": "panel", "attrs": {"panelType": "info"}, "content": [para(text("*Panel* words"))]},
        {"type": "mediaSingle", "content": [{"type": "media", "attrs": {"id": "1", "type": "file"}}]},
        {
            "type": "table",
            "content": [
                {"type": "tableRow", "content": [{"type": "tableCell", "content": [para(text("cell"))]}]},
            ],
        },
        {"type": "someFutureNode", "content": [text("future")]},
    )
    markdown = adf_to_markdown(adf)
    assert markdown == "Hi @Ada :tada: see https://c.example\n\n\\*Panel\\* words\n\ncell\n\nfuture"
    assert valid(markdown_to_adf(markdown))
    assert adf_text(adf) == "Hi @Ada :tada: see https://c.example\n*Panel* words\ncell\nfuture"


def test_adf_from_other_clients_reads_as_markdown_that_reads_back_the_same() -> None:
    # Marks in another order, a code mark beside bold, text with a newline, spaces at the edges.
    adf = doc(
        para(
            text("  lead"),
            text("x", STRONG, link("https://l.example")),
            text(" y ", EM),
            text("z", STRONG, CODE),
            text("a\nb"),
        )
    )
    once = markdown_to_adf(adf_to_markdown(adf))
    valid(once)
    assert adf_text(once) == "  leadx y z" + "a\nb"
    assert markdown_to_adf(adf_to_markdown(once)) == once


def test_plain_text_stays_plain() -> None:
    assert text_adf("a *b*\nc\n\nd") == doc(para(text("a *b*"), {"type": "hardBreak"}, text("c")), para(text("d")))
    assert adf_text(markdown_to_adf("- a\n- b\n\n> c")) == "a\nb\nc"


# -- generated documents ---------------------------------------------------------------

WORDS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)
PUNCTUATION = st.sampled_from([*list("*_`[]()<>#!~&\\-+=.:;|"), "**", "~~", "1.", "> ", "- ", "```", "&amp;", "  "])
INLINE = st.lists(st.one_of(WORDS, PUNCTUATION, st.just(" "), st.just("\n")), min_size=1, max_size=20).map("".join)


@st.composite
def markdown_documents(draw: st.DrawFn) -> str:
    blocks = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["para", "heading", "list", "ordered", "code", "quote", "rule"]))
        words = draw(INLINE)
        if kind == "heading":
            blocks.append("#" * draw(st.integers(1, 6)) + " " + words)
        elif kind in ("list", "ordered"):
            marker = "- " if kind == "list" else "1. "
            blocks.append(
                "\n".join(draw(st.sampled_from(["", "  ", "    "])) + marker + line for line in words.split("\n"))
            )
        elif kind == "code":
            blocks.append("```" + draw(st.sampled_from(["", "py", "json"])) + "\n" + words + "\n```")
        elif kind == "quote":
            blocks.append("\n".join("> " + line for line in words.split("\n")))
        elif kind == "rule":
            blocks.append("---")
        else:
            blocks.append(words)
    return "\n\n".join(blocks)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markdown_documents())
def test_any_markdown_becomes_valid_adf_that_round_trips(markdown: str) -> None:
    """md -> adf is valid ADF, and adf -> md -> adf gives that ADF back."""
    adf = valid(markdown_to_adf(markdown))
    assert markdown_to_adf(adf_to_markdown(adf)) == adf


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_at_all_becomes_valid_adf_that_round_trips(anything: str) -> None:
    adf = valid(markdown_to_adf(anything))
    assert markdown_to_adf(adf_to_markdown(adf)) == adf


# -- hostile input ---------------------------------------------------------------------


def nested(kind: str, depth: int) -> dict[str, Any]:
    node: dict[str, Any] = para(text("bottom"))
    for _ in range(depth):
        node = {"type": kind, "content": [item(node)] if kind == "bulletList" else [node]}
    return doc(node)


@pytest.mark.parametrize("kind", ["blockquote", "bulletList", "panel"])
def test_adf_nested_a_hundred_thousand_deep_is_read_without_recursing(kind: str) -> None:
    deep = nested(kind, 100_000)
    assert adf_text(deep) == "bottom"
    assert adf_to_markdown(deep).endswith("bottom")


@pytest.mark.parametrize("prefix", ["> ", "- ", "1. ", "*", "[", "**a "])
def test_markdown_nested_a_hundred_thousand_deep_is_cut_and_bounded(prefix: str) -> None:
    adf = valid(markdown_to_adf(prefix * 100_000 + "x"))
    depth, stack = 0, [(adf, 0)]
    while stack:
        node, level = stack.pop()
        depth = max(depth, level)
        stack.extend((child, level + 1) for child in node.get("content", []))
    assert depth <= 50
    assert len(adf_text(adf)) <= MAX_MARKDOWN_CHARS
