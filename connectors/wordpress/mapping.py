"""WordPress JSON to threadlink records. Pure functions: no I/O, so tests feed them captured payloads.

A post or page is keyed by its numeric id alone (`42`): posts and pages share one id space in
WordPress, and `?p=42` reaches either, so the record id is `<connector>:42` whatever the type.

HTML becomes plain text with the standard library's `html.parser`: WordPress's rendered HTML is
well formed enough, the parser never fetches or executes anything, needs no new dependency, and
decodes entities (`convert_charrefs`); block elements become line breaks, scripts and styles
are dropped, and so are control characters.

Visibility: a published post without a password is `published_visibility` (public by default:
anyone can read it on the site); drafts, pending review, scheduled (future), private and
password-protected posts are `unpublished_visibility` (internal by default, never public).
A trashed post is missing.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from connectors.errors import SkippableError
from connectors.runtime.payloads import iso_time
from connectors.wordpress.config import WordPressConfig
from schemas.records import MAX_BODY, ArticleRecord, RecordRef, version_of
from schemas.social import ThreadRef
from schemas.visibility import Visibility

#: Tags of the drafts threadlink writes start with this; they are left out of records.
THREAD_TAG_PREFIX = "threadlink-thread-"
MAX_TITLE_CHARS = 300
MAX_EXCERPT_CHARS = 1000
#: Post statuses whose posts anyone may read; everything else is unpublished.
PUBLISHED = "publish"

_BLOCKS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    ]
)
_SKIPPED = frozenset({"script", "style", "template", "noscript", "iframe", "svg"})
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
#: Control characters other than tab and newline: never text anyone wrote, and some clients choke on them.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


class _TextParser(HTMLParser):
    def __init__(self, limit: int) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag in _BLOCKS:
            self._add("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self._add("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS:
            self._add("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self._add(data)

    def _add(self, text: str) -> None:
        if self.size < self.limit:  # stop collecting early: a huge page costs no more memory than the limit
            self.parts.append(text)
            self.size += len(text)


def html_to_text(markup: Any, *, limit: int = MAX_BODY) -> str:
    """Plain text of WordPress HTML: entities decoded, tags gone, one line per block, at most
    one blank line in a row, at most `limit` characters (cut with an ellipsis)."""
    if not isinstance(markup, str) or not markup:
        return ""
    parser = _TextParser(limit * 2)
    parser.feed(markup)
    parser.close()
    lines = [_SPACES.sub(" ", _CONTROLS.sub("", line)).strip() for line in "".join(parser.parts).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def rendered(post: Mapping[str, Any], field: str) -> Any:
    """`post[field].rendered` (WordPress's shape for title, content and excerpt), else None."""
    value = post.get(field)
    return value.get("rendered") if isinstance(value, Mapping) else None


def post_key(post: Any) -> str:
    if not isinstance(post, Mapping) or type(post.get("id")) is not int or post["id"] < 1:
        raise SkippableError("wordpress post without a positive numeric id")
    return str(post["id"])


def gmt_time(value: Any) -> datetime | None:
    """WordPress's `*_gmt` fields (`2026-12-04T18:48:44`, UTC without a zone) as UTC."""
    moment = iso_time(value)
    return moment.astimezone(UTC) if moment is not None else None


def is_protected(post: Mapping[str, Any]) -> bool:
    content = post.get("content")
    return bool(post.get("password")) or (isinstance(content, Mapping) and content.get("protected") is True)


def post_visibility(post: Mapping[str, Any], config: WordPressConfig) -> Visibility:
    if post.get("status") == PUBLISHED and not is_protected(post):
        return config.published_visibility
    return config.unpublished_visibility


def term_ids(post: Mapping[str, Any], taxonomy: str) -> list[int]:
    """The ids of `categories` or `tags` (absent for pages), at most 100 of them."""
    ids = post.get(taxonomy)
    if not isinstance(ids, list):
        return []
    return [i for i in ids if type(i) is int and i > 0][:100]


def article_from_post(
    post: Any, *, system: str, config: WordPressConfig, terms: Mapping[int, str] | None = None
) -> ArticleRecord:
    """A post or page of `GET /wp/v2/posts|pages` (context=edit or view) as an ArticleRecord;
    `terms` names the category and tag ids already resolved (the others are left out)."""
    key = post_key(post)
    names = terms or {}
    modified = gmt_time(post.get("modified_gmt"))
    title = html_to_text(rendered(post, "title"), limit=MAX_TITLE_CHARS).replace("\n", " ")
    status = post.get("status")
    link = post.get("link")
    tags = [names[i] for i in term_ids(post, "tags") if i in names]
    return ArticleRecord(
        ref=RecordRef(system=system, key=key),
        title=title or f"#{key}",
        url=link if isinstance(link, str) and link.startswith(("https://", "http://")) else config.post_url(key),
        status=status if isinstance(status, str) else None,
        excerpt=html_to_text(rendered(post, "excerpt"), limit=MAX_EXCERPT_CHARS),
        body=html_to_text(rendered(post, "content")),
        categories=[names[i] for i in term_ids(post, "categories") if i in names],
        tags=[t for t in tags if not t.startswith(THREAD_TAG_PREFIX)],
        updated_at=modified,
        version=version_of(modified),
        visibility=post_visibility(post, config),
    )


def thread_tag(thread: ThreadRef) -> str:
    """The tag (name and slug) on the draft written for a thread: how a retry finds it instead of
    writing a second. A tag, not post meta: meta needs `register_meta` in a plugin to be written
    or searched over REST, a tag works on any site."""
    return THREAD_TAG_PREFIX + hashlib.sha256(thread.id.encode()).hexdigest()[:16]


def draft_content(body: str, *, permalink: str | None) -> str:
    """The draft's HTML: each paragraph (blank-line separated) of the plain text escaped in a
    `<p>`, lines kept, then the thread's link."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", body or "") if p.strip()]
    parts = ["<p>" + html.escape(p).replace("\n", "<br>\n") + "</p>" for p in paragraphs]
    if permalink and permalink.startswith(("https://", "http://")):
        href = html.escape(permalink, quote=True)
        parts.append(f'<p>From the thread: <a href="{href}">{href}</a></p>')
    return "\n\n".join(parts)
