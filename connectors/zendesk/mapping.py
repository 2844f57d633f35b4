"""Zendesk JSON to threadlink records, and threadlink's marks on what it writes to Zendesk.

Pure functions: no I/O, so tests feed them payloads of the documented shapes. A ticket is keyed by
its number (`42`), so its record id is `<connector>:42` and its page `<base_url>/agent/tickets/42`.

The same mapping reads both shapes a ticket comes in: the REST ticket object (Tickets API and the
incremental export: ids are integers, `status` lower-case) and the `detail` object of a webhook's
ticket event (ids are strings, `status` upper-case), see
https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/ and
https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/.

A comment is public when Zendesk says so (`public` over REST, `is_public` in events); anything else,
an internal note among them, is `public: false` with the connector's internal visibility, so it
never reaches a social platform.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors.errors import SkippableError
from connectors.runtime.payloads import iso_time
from connectors.zendesk.config import ZendeskConfig
from schemas.records import RecordComment, RecordRef, TicketRecord, version_of
from schemas.social import ThreadRef
from schemas.visibility import Visibility, narrowest

#: Zendesk keeps a subject of up to 255 characters; threadlink's are cut shorter.
MAX_SUBJECT_CHARS = 200
#: Zendesk refuses comments over 64 KB; leave room for the link.
MAX_COMMENT_CHARS = 60_000
_ID = re.compile(r"^[1-9][0-9]{0,18}$")


def parse_zendesk_time(value: Any) -> datetime | None:
    """Zendesk writes ISO 8601 in UTC (`2024-01-17T12:34:56Z`); anything else is unknown."""
    return iso_time(value)


def zendesk_id(value: Any) -> str | None:
    """A Zendesk id (an integer over REST, a numeric string in webhook events) as a string;
    None for anything that is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    return value if isinstance(value, str) and _ID.match(value) else None


def is_ticket_key(key: str) -> bool:
    return zendesk_id(key) is not None


def ticket_key(ticket: Any) -> str:
    key = zendesk_id(ticket.get("id")) if isinstance(ticket, Mapping) else None
    if key is None:
        raise SkippableError("zendesk ticket without a numeric id")
    return key


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _lower(value: Any) -> str | None:
    text = _text(value)
    return text.lower() if text else None


def ticket_visibility(ticket: Mapping[str, Any], config: ZendeskConfig) -> Visibility:
    """The account's visibility. Not narrowed for a ticket without public comments
    (`is_public: false`): that flag is about the requester, and every agent sees the ticket; its
    internal notes stay internal on their own (`comment_record`). Narrowing it would hide the
    card of a ticket threadlink itself opened with an internal note, in the very thread it came from."""
    return config.default_visibility


def ticket_record(ticket: Any, *, system: str, config: ZendeskConfig) -> TicketRecord:
    """A REST ticket, or a webhook event's `detail`, as a TicketRecord; SkippableError without an id."""
    if not isinstance(ticket, Mapping):
        raise SkippableError("zendesk payload without a ticket object")
    key = ticket_key(ticket)
    updated_at = parse_zendesk_time(ticket.get("updated_at"))
    tags = ticket.get("tags")
    assignee = zendesk_id(ticket.get("assignee_id"))
    return TicketRecord(
        ref=RecordRef(system=system, key=key),
        title=_text(ticket.get("subject")) or f"#{key}",
        status=_lower(ticket.get("status")),
        assignee=f"agent {assignee}" if assignee else None,
        priority=_lower(ticket.get("priority")),
        project=_lower(ticket.get("type")),
        labels=[tag for tag in tags if isinstance(tag, str)][:50] if isinstance(tags, list) else [],
        url=config.ticket_url(key),
        updated_at=updated_at,
        version=version_of(updated_at),
        visibility=ticket_visibility(ticket, config),
    )


def comment_record(
    key: str,
    comment: Any,
    *,
    system: str,
    config: ZendeskConfig,
    at: datetime | None = None,
    own_user_id: str | None = None,
) -> RecordComment:
    """A comment of ticket `key`: a REST comment (`public`, `author_id`, `plain_body`) or the
    `event.comment` of a webhook's `ticket.comment_added` (`is_public`, `author.id`). `at` is when
    it was made, for an event comment (which has no time of its own)."""
    if not isinstance(comment, Mapping):
        raise SkippableError(f"zendesk comment event for ticket {key} without a comment")
    comment_id = zendesk_id(comment.get("id"))
    if comment_id is None:
        raise SkippableError(f"zendesk comment on ticket {key} without a numeric id")
    public = comment.get("public", comment.get("is_public")) is True
    author = comment.get("author")
    author_id = zendesk_id(author.get("id") if isinstance(author, Mapping) else comment.get("author_id"))
    author_name = _text(author.get("name")) if isinstance(author, Mapping) else None
    body = comment.get("plain_body", comment.get("body"))
    created_at = parse_zendesk_time(comment.get("created_at")) or at
    internal = narrowest(config.default_visibility, config.internal_visibility)
    return RecordComment(
        ref=RecordRef(system=system, key=key),
        comment_id=comment_id,
        author=author_name or (f"user {author_id}" if author_id else None),
        body=body if isinstance(body, str) else "",
        public=public,
        visibility=config.default_visibility if public else internal,
        by_threadlink=own_user_id is not None and author_id == own_user_id,
        created_at=created_at,
        version=version_of(created_at),
    )


# -- what threadlink writes -----------------------------------------------------------------------


def thread_external_id(thread: ThreadRef) -> str:
    """The external_id (and tag) of the ticket opened for a thread: how a retry finds it
    (`GET /api/v2/tickets.json?external_id=`) instead of opening a second one."""
    return "threadlink-" + hashlib.sha256(thread.id.encode()).hexdigest()[:20]


def ticket_subject(summary: str, thread: ThreadRef) -> str:
    words = " ".join(summary.split())
    if len(words) > MAX_SUBJECT_CHARS:
        words = words[: MAX_SUBJECT_CHARS - 1] + "…"
    return words or f"Thread from {thread.platform}"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_COMMENT_CHARS else text[: MAX_COMMENT_CHARS - 1] + "…"


def ticket_description(description: str, thread: ThreadRef, permalink: str | None = None) -> str:
    """The first comment of a thread's ticket: what was said, then where."""
    where = permalink if permalink and permalink.startswith(("https://", "http://")) else thread.id
    text = _clip(description.strip())
    return f"{text}\n\nDiscussed in a {thread.platform} thread: {where}" if text else f"Discussed in {where}"


def backlink_comment(thread: ThreadRef | None, *, permalink: str | None = None, text: str = "") -> str:
    """A back-link comment: the command's words, then the thread's link (or its id)."""
    intro = _clip(text.strip() or (f"Discussed in a {thread.platform} thread" if thread else "Discussed in a thread"))
    if permalink and permalink.startswith(("https://", "http://")):
        return f"{intro} {permalink}"
    return f"{intro} {thread.id}" if thread is not None else intro
