"""Atlassian Document Format (ADF), the rich text of Jira Cloud's REST v3, to and from plain
text and Markdown.

Pure functions, no I/O. Markdown is CommonMark plus `~~strike~~`, parsed by markdown-it-py
into tokens; ADF is written from those tokens without recursion, and read back to Markdown by
hand (ADF is a small tree). What one format has and the other has not degrades to text: an ADF
mention, emoji, panel or table becomes its words; raw HTML in Markdown stays literal text.

What Jira refuses never leaves here: text nodes are never empty, the code mark goes with no
mark but a link, headings and rules stand only at the top level, and a list item or quote
always has a paragraph. Hostile input is bounded: Markdown is cut to `MAX_MARKDOWN_CHARS`
and nests at most `MAX_MARKDOWN_NESTING` levels (markdown-it stops there), and ADF deeper
than `MAX_ADF_DEPTH` is read as plain text, without recursing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from schemas.social import ThreadRef

#: Jira Cloud refuses comments longer than 32767 characters; leave room for the link.
MAX_TEXT_CHARS = 30_000
#: Markdown read at most (the rest is cut): a comment cannot hold more anyway.
MAX_MARKDOWN_CHARS = MAX_TEXT_CHARS
#: How deep Markdown blocks and emphasis may nest before markdown-it stops parsing them.
MAX_MARKDOWN_NESTING = 20
#: How deep ADF is rendered as Markdown; below that, a subtree becomes its plain text.
MAX_ADF_DEPTH = 32

Node = dict[str, Any]

#: Blocks each container may hold in ADF (https://developer.atlassian.com/cloud/jira/platform/apis/document/structure/).
NESTABLE_IN = {
    "listItem": {"paragraph", "bulletList", "orderedList", "codeBlock", "mediaSingle"},
    "blockquote": {"paragraph", "bulletList", "orderedList", "codeBlock", "mediaGroup", "mediaSingle"},
}
#: The order marks are listed in (and opened in, outermost first, when written as Markdown).
MARK_ORDER = ("link", "strong", "em", "strike", "code")
_MARK_OF_TOKEN = {"strong": "strong", "em": "em", "s": "strike"}
#: CommonMark's Unicode whitespace (Python's str.strip() also takes control characters).
_SPACE = " \t\f\r\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u202f\u205f\u3000"


# -- plain text ----------------------------------------------------------------------------

_BLOCK_JOINED = {"doc", "blockquote", "bulletList", "orderedList", "listItem", "panel", "table", "tableRow", "expand"}


def adf_text(node: Any) -> str:
    """The plain text of an ADF document (blocks on their own lines), however deep it nests."""
    # Post-order without recursion: each frame collects its children's text.
    result: list[str] = []
    stack: list[tuple[Any, list[str], list[str], bool]] = [(node, [], result, False)]
    while stack:
        current, parts, into, expanded = stack.pop()
        if expanded:
            joiner = "\n" if current.get("type") in _BLOCK_JOINED else ""
            into.append(joiner.join(part for part in parts if part) if joiner else "".join(parts))
            continue
        leaf = _leaf_text(current)
        if leaf is not None:
            into.append(leaf)
            continue
        children = current.get("content")
        stack.append((current, parts, into, True))
        for child in reversed(children):
            stack.append((child, [], parts, False))
    return result[0] if result else ""


def _leaf_text(node: Any) -> str | None:
    """The text of a node without children; None for a node whose children make its text."""
    if isinstance(node, str):
        return node
    if not isinstance(node, Mapping):
        return ""
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "hardBreak":
        return "\n"
    attrs = _attrs(node)
    if kind in ("mention", "emoji", "status"):
        return str(attrs.get("text") or attrs.get("shortName") or "")
    if kind in ("inlineCard", "blockCard", "embedCard"):
        return str(attrs.get("url") or "")
    if kind == "date":
        return str(attrs.get("timestamp") or "")
    if not isinstance(node.get("content"), list):
        return ""
    return None


def _text(text: str, href: str | None = None) -> Node:
    node: Node = {"type": "text", "text": text}
    if href:
        node["marks"] = [{"type": "link", "attrs": {"href": href}}]
    return node


def _lines(text: str) -> list[Node]:
    """Text with line breaks as ADF inline nodes (text nodes joined by hardBreak)."""
    nodes: list[Node] = []
    for line in text.splitlines():
        if nodes:
            nodes.append({"type": "hardBreak"})
        if line:
            nodes.append(_text(line))
    return nodes


def _doc(content: list[Node]) -> Node:
    return {"type": "doc", "version": 1, "content": content or [{"type": "paragraph", "content": []}]}


def text_adf(text: str) -> Node:
    """Plain text as an ADF doc: a paragraph per blank-line-separated block, line breaks kept
    (ADF text nodes may not be empty)."""
    blocks = [block for block in text.replace("\r\n", "\n").split("\n\n") if block.strip()]
    return _doc([{"type": "paragraph", "content": _lines(block[:MAX_TEXT_CHARS])} for block in blocks])


def backlink_adf(thread: ThreadRef | None, *, permalink: str | None = None, text: str = "") -> Node:
    """The ADF body of a back-link comment: `text` (the command's words, Markdown; by default
    "Discussed in a Slack thread") followed by the permalink as a link, or by the thread's id
    when there is no http(s) permalink (nothing when the comment names no thread)."""
    intro = text.strip() or (f"Discussed in a {thread.platform} thread" if thread else "Discussed in a thread")
    if len(intro) > MAX_TEXT_CHARS:
        intro = intro[: MAX_TEXT_CHARS - 1] + "…"
    doc = markdown_to_adf(intro, breaks=True)
    if permalink and permalink.startswith(("https://", "http://")):
        link = _text(permalink, href=permalink)
    elif thread is not None:
        link = _text(thread.id)
    else:
        return doc
    last = doc["content"][-1]
    if last["type"] == "paragraph":
        last.setdefault("content", []).extend([_text(" "), link] if last["content"] else [link])
    else:
        doc["content"].append({"type": "paragraph", "content": [link]})
    return _merged(doc)


# -- Markdown to ADF -----------------------------------------------------------------------


@cache
def _parser(breaks: bool) -> MarkdownIt:
    # CommonMark, strikethrough, no raw HTML (it stays text: ADF has no place for it).
    parser = MarkdownIt("commonmark", {"breaks": breaks, "maxNesting": MAX_MARKDOWN_NESTING})
    return parser.enable("strikethrough").disable(["html_block", "html_inline"])


def markdown_to_adf(markdown: str, *, breaks: bool = False) -> Node:
    """Markdown as an ADF doc. `breaks=True` reads every line break as one (chat messages,
    where a newline is meant as such); otherwise a single newline is a space, as CommonMark has it."""
    source = markdown.replace("\r\n", "\n")[:MAX_MARKDOWN_CHARS]
    tokens = _parser(breaks).parse(source)
    root: Node = {"type": "doc", "version": 1, "content": []}
    stack: list[Node] = [root]
    for token in tokens:
        if token.nesting == 1:
            stack.append(_block_open(token))
        elif token.nesting == -1:
            node = stack.pop()
            _close_block(node, stack[-1])
        elif token.type == "inline":
            stack[-1].setdefault("content", []).extend(_inline(token.children or [], breaks=breaks))
        elif token.type in ("fence", "code_block"):
            _append_block(_code_block(token), stack[-1])
        elif token.type == "hr":
            _append_block({"type": "rule"}, stack[-1])
    return _merged(_doc(root["content"]))


def _block_open(token: Token) -> Node:
    if token.type == "heading_open":
        return {"type": "heading", "attrs": {"level": int(token.tag[1])}, "content": []}
    if token.type == "bullet_list_open":
        return {"type": "bulletList", "content": []}
    if token.type == "ordered_list_open":
        start = token.attrGet("start")
        node: Node = {"type": "orderedList", "content": []}
        if start is not None and int(start) != 1:
            node["attrs"] = {"order": int(start)}
        return node
    if token.type == "list_item_open":
        return {"type": "listItem", "content": []}
    if token.type == "blockquote_open":
        return {"type": "blockquote", "content": []}
    return {"type": "paragraph", "content": []}


def _close_block(node: Node, parent: Node) -> None:
    if node["type"] == "heading":
        # A Markdown heading is one line: a break in a setext heading's text is a space.
        node["content"] = [_text(" ") if child["type"] == "hardBreak" else child for child in node["content"]]
    if node["type"] in ("paragraph", "heading"):
        node["content"] = _unmarked_edges(_merged_texts(node["content"]))
    first = node["content"][0]["type"] if node.get("content") else None
    if (node["type"] == "blockquote" and first is None) or (
        node["type"] == "listItem" and first not in ("paragraph", "codeBlock")
    ):
        # Jira refuses an empty quote, and a list item that starts with a list (or nothing).
        node["content"].insert(0, {"type": "paragraph", "content": []})
    _append_block(node, parent)


def _append_block(node: Node, parent: Node) -> None:
    """Add a block where ADF allows it; where it does not (a heading in a quote, a quote in
    a list), its content takes its place."""
    allowed = NESTABLE_IN.get(parent["type"])
    content = parent.setdefault("content", [])
    if allowed is not None and node["type"] == "heading":
        node = {"type": "paragraph", "content": node["content"]}
    if node["type"] == "paragraph" and not node["content"]:
        return  # Markdown has no empty paragraph to write it back as; where Jira wants one, it is added
    if allowed is None or node["type"] in allowed:
        content.append(node)
    elif node["type"] == "blockquote":
        content.extend(
            child
            for child in node["content"]
            if child["type"] in allowed and (child["type"] != "paragraph" or child["content"])
        )
    # a rule in a list or a quote: dropped (ADF has no place for it there)


def _code_block(token: Token) -> Node:
    node: Node = {"type": "codeBlock"}
    words = token.info.split() if token.type == "fence" else []
    language = words[0] if words else ""
    if language:
        node["attrs"] = {"language": language[:100]}
    text = token.content.removesuffix("\n")
    node["content"] = [{"type": "text", "text": text}] if text else []
    return node


def _inline(tokens: list[Token], *, breaks: bool) -> list[Node]:
    nodes: list[Node] = []
    marks: list[Node] = []
    for token in tokens:
        kind = token.type
        if kind in ("text", "code_inline"):
            if token.content:
                code = [{"type": "code"}] if kind == "code_inline" else []
                nodes.append(_marked(token.content, marks + code))
        elif kind == "image":
            alt = "".join(child.content for child in token.children or []) or str(token.attrGet("src") or "")
            if alt:
                nodes.append(_marked(alt, [*marks, _link_mark(token.attrGet("src"))]))
        elif kind == "softbreak":
            nodes.append({"type": "hardBreak"} if breaks else _marked(" ", marks))
        elif kind == "hardbreak":
            nodes.append({"type": "hardBreak"})
        elif kind == "link_open":
            marks.append(_link_mark(token.attrGet("href")))
        elif kind.endswith("_open") and kind[:-5] in _MARK_OF_TOKEN:
            marks.append({"type": _MARK_OF_TOKEN[kind[:-5]]})
        elif kind.endswith("_close") and marks:
            marks.pop()
    return nodes


def _unmarked_edges(nodes: list[Node]) -> list[Node]:
    """Spaces at the edges of marked text keep only the marks the text beside them shares:
    CommonMark opens and closes marks only next to words (`*a *` is no emphasis), so that is
    how Markdown reads them back."""
    out: list[Node] = []
    for index, node in enumerate(nodes):
        marks = node.get("marks", [])
        if node["type"] != "text" or not marks or any(mark["type"] == "code" for mark in marks):
            out.append(node)
            continue
        words = node["text"].strip(_SPACE)
        lead = node["text"][: len(node["text"]) - len(node["text"].lstrip(_SPACE))]
        trail = node["text"][len(lead) + len(words) :]
        before = _span_marks(nodes[index - 1]) if index else []
        after = _span_marks(nodes[index + 1]) if index + 1 < len(nodes) else []
        if lead:
            out.append(_marked(lead, [mark for mark in marks if mark in before]))
        if words:
            out.append({**node, "text": words})
        if trail:
            out.append(_marked(trail, [mark for mark in marks if mark in after]))
    return _merged_texts(out)


def _span_marks(node: Node) -> list[Node]:
    """The marks of a node that Markdown writes as spans around it (not code's)."""
    marks = node.get("marks", []) if node.get("type") == "text" else []
    return [] if any(mark["type"] == "code" for mark in marks) else marks


def _link_mark(href: Any) -> Node:
    return {"type": "link", "attrs": {"href": str(href or "#")}}


def _marked(text: str, marks: list[Node]) -> Node:
    """A text node with `marks` in their canonical order, each once; code keeps only a link."""
    kinds = {mark["type"] for mark in marks}
    chosen: dict[str, Node] = {}
    for mark in marks:
        if "code" in kinds and mark["type"] not in ("code", "link"):
            continue
        chosen.setdefault(mark["type"], mark)  # the innermost link of nested ones loses: CommonMark has none
    ordered = [chosen[kind] for kind in MARK_ORDER if kind in chosen]
    node: Node = {"type": "text", "text": text}
    if ordered:
        node["marks"] = ordered
    return node


def _merged(doc: Node) -> Node:
    """Adjacent text nodes with the same marks as one (how Jira's editor stores them)."""
    stack = [doc]
    while stack:
        node = stack.pop()
        content = node.get("content")
        if not isinstance(content, list):
            continue
        node["content"] = _merged_texts(content)
        stack.extend(child for child in node["content"] if child.get("type") != "text")
    return doc


def _merged_texts(nodes: list[Node]) -> list[Node]:
    merged: list[Node] = []
    for child in nodes:
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and child.get("type") == "text"
            and previous.get("type") == "text"
            and child.get("marks") == previous.get("marks")
        ):
            merged[-1] = {**previous, "text": previous["text"] + child["text"]}
        else:
            merged.append(child)
    return merged


# -- ADF to Markdown -----------------------------------------------------------------------


def adf_to_markdown(doc: Any) -> str:
    """An ADF document as Markdown that `markdown_to_adf` reads back into the same document
    (for the nodes and marks both have; others become their text)."""
    if not isinstance(doc, Mapping):
        return _escape_lines(str(doc)) if isinstance(doc, str) else ""
    return _blocks(_children(doc), depth=1).strip("\n")


def _attrs(node: Mapping[str, Any]) -> Mapping[str, Any]:
    attrs = node.get("attrs")
    return attrs if isinstance(attrs, Mapping) else {}


def _children(node: Mapping[str, Any]) -> list[Any]:
    content = node.get("content")
    return content if isinstance(content, list) else []


def _blocks(nodes: list[Any], *, depth: int, in_item: bool = False) -> str:
    parts: list[str] = []
    previous_kind: Any = None
    previous_list: tuple[str, bool] | None = None  # the list just written, and whether it used the other marker
    for node in nodes:
        kind = node.get("type") if isinstance(node, Mapping) else None
        if kind in ("bulletList", "orderedList"):
            # Two lists in a row are one list in Markdown, unless the marker changes.
            alternate = previous_list is not None and previous_list[0] == kind and not previous_list[1]
            written = _list(node, depth=depth, alternate=alternate)
            if in_item and previous_kind == "paragraph" and parts and _interrupts(node):
                parts[-1] += "\n" + written  # a tight item: its words, then its sub-list
            else:
                parts.append(written)
            previous_list, previous_kind = (kind, alternate), kind
            continue
        previous_list = None
        written = _block(node, depth=depth)
        if written:
            parts.append(written)
            previous_kind = kind
    return "\n\n".join(parts)


def _interrupts(node: Mapping[str, Any]) -> bool:
    """Whether a list may start right under a paragraph's last line (an ordered one only at 1)."""
    items = _children(node)
    first = _children(items[0])[0] if items and isinstance(items[0], Mapping) and _children(items[0]) else None
    # An empty first item (`-`) under a paragraph's line would underline it as a heading.
    has_words = isinstance(first, Mapping) and first.get("type") == "paragraph" and bool(_children(first))
    return has_words and (node.get("type") == "bulletList" or _attrs(node).get("order", 1) == 1)


def _block(node: Any, *, depth: int) -> str:
    if not isinstance(node, Mapping):
        return ""
    if depth > MAX_ADF_DEPTH:
        return _escape_lines(adf_text(node))
    kind = node.get("type")
    attrs = _attrs(node)
    if kind == "paragraph":
        return _inlines(_children(node))
    if kind == "heading":
        level = attrs.get("level")
        level = level if isinstance(level, int) and 1 <= level <= 6 else 1
        text = _inlines(_children(node), breaks_as=" ")
        return "#" * level + (" " + text if text else "")
    if kind == "codeBlock":
        return _fenced(adf_text(node), attrs.get("language"))
    if kind == "blockquote":
        inner = _blocks(_children(node), depth=depth + 1)
        return "\n".join(("> " + line) if line else ">" for line in (inner or "").split("\n"))
    if kind == "rule":
        return "---"
    if kind in ("bulletList", "orderedList"):
        return _list(node, depth=depth, alternate=False)
    return _escape_lines(adf_text(node))  # a panel, a table, media, ...: its words


def _list(node: Mapping[str, Any], *, depth: int, alternate: bool) -> str:
    if depth > MAX_ADF_DEPTH:
        return _escape_lines(adf_text(node))
    ordered = node.get("type") == "orderedList"
    attrs = _attrs(node)
    order = attrs.get("order")
    number = order if isinstance(order, int) and 0 <= order < 10**9 else 1
    items = []
    for item in _children(node):
        marker = f"{number}{')' if alternate else '.'} " if ordered else ("* " if alternate else "- ")
        number += 1
        inner = _blocks(_children(item), depth=depth + 1, in_item=True) if isinstance(item, Mapping) else ""
        lines = inner.split("\n")
        pad = " " * len(marker)
        if _starts_with_list(item):
            lines.insert(0, "")  # `- - -` would be a rule: the sub-list goes on the next line
        body = "\n".join([lines[0], *((pad + line) if line else "" for line in lines[1:])])
        items.append((marker + body).rstrip() if body else marker.rstrip())
    return "\n".join(items)


def _starts_with_list(item: Any) -> bool:
    if not isinstance(item, Mapping):
        return False
    for child in _children(item):
        if isinstance(child, Mapping) and child.get("type") == "paragraph" and not _children(child):
            continue  # written as nothing
        return isinstance(child, Mapping) and child.get("type") in ("bulletList", "orderedList")
    return False


def _fenced(code: str, language: Any) -> str:
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    info = language.split()[0].replace("`", "") if isinstance(language, str) and language.split() else ""
    return f"{fence}{info}\n{code}\n{fence}" if code else f"{fence}{info}\n{fence}"


def _inline_items(nodes: list[Any]) -> Iterator[tuple[str, list[Node]] | None]:
    """(text, marks) for each run of text; None for a line break."""
    for node in nodes:
        if not isinstance(node, Mapping):
            continue
        if node.get("type") == "hardBreak":
            yield None
            continue
        marks = node.get("marks") if node.get("type") == "text" else None
        text = adf_text(node)
        marks = [m for m in marks if isinstance(m, Mapping)] if isinstance(marks, list) else []
        for index, line in enumerate(text.split("\n")):
            if index:
                yield None
            if line:
                yield line, _marked(line, marks).get("marks", [])


def _inlines(nodes: list[Any], *, breaks_as: str = "\\\n") -> str:
    """Inline nodes as Markdown: marks opened and closed where they change (outermost first,
    as MARK_ORDER lists them), whitespace kept outside the delimiters (CommonMark's flanking
    rules), and text escaped where Markdown would read it as syntax."""
    out: list[str] = []
    active: list[Node] = []
    pending = ""  # whitespace that ended the last run, written after its marks close
    at_line_start = True

    def close(keep: int) -> None:
        while len(active) > keep:
            out.append(_closer(active.pop()))

    for item in _inline_items(nodes):
        if item is None:
            close(0)
            # Spaces before a backslash break are kept by CommonMark (at a line's start, as entities).
            out.append((_entities(pending) if at_line_start else pending) + breaks_as)
            pending, at_line_start = "", breaks_as != " "
            continue
        text, marks = item
        spans = [mark for mark in marks if mark["type"] != "code"]
        # Marks that go on stay open; the first that ends closes those opened inside it too.
        keep = next((index for index, mark in enumerate(active) if mark not in spans), len(active))
        close(keep)
        code = len(spans) < len(marks)
        if code:
            lead, core, trail = "", text, ""
        else:
            core = text.strip(_SPACE)
            if not core:
                pending += text
                continue
            lead, trail = text[: len(text) - len(text.lstrip(_SPACE))], text[len(text.rstrip(_SPACE)) :]
        space = pending + lead
        pending = trail
        if space:
            # Leading spaces of a line: CommonMark would drop them (or read code), entities it keeps.
            out.append(_entities(space) if at_line_start else space)
        for mark in [mark for mark in spans if mark not in active]:
            out.append(_opener(mark))
            active.append(mark)
        out.append(_code_span(core) if code else _escape(core, line_start=at_line_start and not space))
        at_line_start = False
    close(0)
    if pending:
        out.append(_entities(pending) if at_line_start else pending)
    written = "".join(out)
    while breaks_as != " " and written.endswith(breaks_as):
        written = written.removesuffix(breaks_as)  # a break that ends a paragraph is none in Markdown
    return written


def _entities(space: str) -> str:
    return "".join(f"&#{ord(char)};" for char in space)


def _opener(mark: Node) -> str:
    return {"link": "[", "strong": "**", "em": "*", "strike": "~~"}.get(mark["type"], "")


def _closer(mark: Node) -> str:
    if mark["type"] == "link":
        href = str((mark.get("attrs") or {}).get("href") or "#")
        return f"](<{href.replace('<', '%3C').replace('>', '%3E')}>)" if re.search(r"[\s()<>]", href) else f"]({href})"
    return {"strong": "**", "em": "*", "strike": "~~"}.get(mark["type"], "")


def _code_span(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    # CommonMark strips one space from each end of a span, unless it is all spaces.
    edges = text.startswith(("`", " ")) or text.endswith(("`", " "))
    padded = f" {text} " if edges and text.strip(" ") else text
    return f"{ticks}{padded}{ticks}"


_ALWAYS = re.compile(r"([\\`*\[\]<~])|(_)|(&(?=#?\w+;))")
_LINE_START = re.compile(r"^(#|>|-|\+|=|\d{1,9}(?=[.)]))")


def _escape(text: str, *, line_start: bool) -> str:
    """Text that Markdown reads back as the same text."""

    def one(match: re.Match[str]) -> str:
        if match.group(2):  # `_` between letters is no emphasis in CommonMark
            before, after = text[match.start() - 1 : match.start()], text[match.end() : match.end() + 1]
            return "_" if before.isalnum() and after.isalnum() else "\\_"
        return "\\" + match.group(0)

    escaped = _ALWAYS.sub(one, text)
    if line_start:
        number = re.match(r"^\d{1,9}([.)])", escaped)
        if number:
            return escaped[: number.end() - 1] + "\\" + escaped[number.end() - 1 :]
        if _LINE_START.match(escaped):
            return "\\" + escaped
    return escaped


def _escape_lines(text: str) -> str:
    """Plain text (of a node Markdown has no form for) as escaped Markdown lines."""
    lines = [line for line in text.split("\n") if line.strip()]
    return "\\\n".join(_escape(line.strip(" "), line_start=True) for line in lines)
