"""The card threadlink posts into a Matrix thread for a record of any kind: an `m.notice` whose
`formatted_body` (org.matrix.custom.html) links the record's key and lists its display fields,
with a plain `body` for clients without HTML and for notifications.

    PROJ-1: Login fails on Safari (In Progress)
    Status: In Progress · Assignee: Ada · Priority: High
    https://acme.atlassian.net/browse/PROJ-1

A redacted card (a restricted record in a place too public for it) names the record and says it
is restricted, nothing more. Notices, not texts: bots answer with m.notice so that other bots do
not answer them back (client-server API, "m.notice").
"""

from __future__ import annotations

from html import escape
from typing import Any

from schemas.records import RecordBase

MAX_TITLE = 200
MAX_FIELDS = 10
MAX_TEXT = 4000
REDACTED_TEXT = "restricted: open it in its own system to see it"
HTML = "org.matrix.custom.html"


def _title(record: RecordBase) -> str:
    title = " ".join(record.title.split())
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…"


def _safe_url(url: str | None) -> str | None:
    return url if url and url.startswith(("https://", "http://")) else None


def card_content(record: RecordBase, *, redacted: bool = False) -> dict[str, Any]:
    """The card as `m.room.message` content (no relation: the sink adds the thread's or the edit's)."""
    key = record.ref.key
    if redacted:
        body = f"{key}: {REDACTED_TEXT}"
        html = f"🔒 <b>{escape(key)}</b> {escape(REDACTED_TEXT)}"
        return {"msgtype": "m.notice", "body": body, "format": HTML, "formatted_body": html}
    status = record.field_value("status")
    lines = [f"{key}: {_title(record)}" + (f" ({status})" if status else "")]
    fields = record.fields[:MAX_FIELDS]
    if fields:
        lines.append(" · ".join(f"{f.label}: {f.value}" for f in fields))
    url = _safe_url(record.url)
    if url:
        lines.append(url)
    heading = f'<a href="{escape(url)}"><b>{escape(key)}</b></a>' if url else f"<b>{escape(key)}</b>"
    html = f"{heading} {escape(_title(record))}"
    if fields:
        html += "<br>" + " · ".join(f"<b>{escape(f.label)}</b>: {escape(f.value)}" for f in fields)
    return {"msgtype": "m.notice", "body": "\n".join(lines), "format": HTML, "formatted_body": html}


def message_content(text: str) -> dict[str, Any]:
    """A short message (a status change) as an m.notice, plain and as HTML."""
    text = text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
    return {"msgtype": "m.notice", "body": text, "format": HTML, "formatted_body": escape(text)}


def in_thread(content: dict[str, Any], root: str, in_reply_to: str | None) -> dict[str, Any]:
    """Content as a reply in the thread of `root` (an `m.thread` relation). `m.in_reply_to` is the
    fallback for clients without threads: the message the card answers when known
    (`is_falling_back` false: it is a real reply), else the root."""
    relation: dict[str, Any] = {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": in_reply_to is None,
        "m.in_reply_to": {"event_id": in_reply_to or root},
    }
    return {**content, "m.relates_to": relation}


def as_edit(content: dict[str, Any], target: str) -> dict[str, Any]:
    """An edit of event `target` to `content` (`m.replace`): clients that know edits show
    `m.new_content`; the others show the starred fallback."""
    fallback = {
        **content,
        "body": f"* {content['body']}",
        "formatted_body": f"* {content['formatted_body']}",
    }
    return {**fallback, "m.new_content": content, "m.relates_to": {"rel_type": "m.replace", "event_id": target}}
