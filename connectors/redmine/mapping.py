"""Redmine JSON to threadlink records. Pure functions: no I/O, so tests feed them captured payloads.

A Redmine issue is keyed by its number alone (`42`), so its record id is `<connector>:42`
(`redmine:42`) and its page `<base_url>/issues/42`. Journals with notes are its comments;
a private note (`private_notes: true`) is never public.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from connectors.errors import SkippableError
from connectors.redmine.config import RedmineConfig
from connectors.runtime.payloads import iso_time
from schemas.records import RecordComment, RecordRef, TicketRecord, version_of
from schemas.social import ThreadRef
from schemas.visibility import Visibility, narrowest

#: Redmine's subject column holds 255 characters; the marker needs room.
MAX_SUBJECT_CHARS = 200
MAX_NOTE_CHARS = 30_000


def parse_redmine_time(value: Any) -> datetime | None:
    """Redmine writes `2024-01-17T12:34:00Z`."""
    return iso_time(value)


def _name(value: Any, attribute: str = "name") -> str | None:
    if isinstance(value, Mapping) and isinstance(value.get(attribute), str) and value[attribute]:
        return value[attribute]
    return None


def issue_key(issue: Any) -> str:
    if not isinstance(issue, Mapping) or not isinstance(issue.get("id"), int) or isinstance(issue["id"], bool):
        raise SkippableError("redmine issue without a numeric id")
    return str(issue["id"])


def issue_visibility(issue: Mapping[str, Any], config: RedmineConfig, *, project: str | None = None) -> Visibility:
    """The project's visibility, narrowed to private_issue_visibility for a private issue."""
    proj = issue.get("project")
    project_id = proj.get("id") if isinstance(proj, Mapping) else None
    visibility = config.visibility_of(project, _name(proj), str(project_id) if project_id is not None else None)
    if issue.get("is_private") is True:
        return narrowest(visibility, config.private_issue_visibility)
    return visibility


def ticket_from_issue(issue: Any, *, system: str, config: RedmineConfig, project: str | None = None) -> TicketRecord:
    """An issue of `GET /issues.json` or `GET /issues/N.json` as a TicketRecord; `project` is
    the identifier it was polled under, when known (issues name their project by id and name)."""
    key = issue_key(issue)
    subject = issue.get("subject")
    updated_at = parse_redmine_time(issue.get("updated_on"))
    tracker = _name(issue.get("tracker"))
    return TicketRecord(
        ref=RecordRef(system=system, key=key),
        title=subject if isinstance(subject, str) and subject.strip() else f"#{key}",
        status=_name(issue.get("status")),
        assignee=_name(issue.get("assigned_to")),
        priority=_name(issue.get("priority")),
        project=project or _name(issue.get("project")),
        labels=[tracker] if tracker else [],
        url=config.issue_url(key),
        updated_at=updated_at,
        version=version_of(updated_at),
        visibility=issue_visibility(issue, config, project=project),
    )


def comments_from_journals(
    issue: Mapping[str, Any],
    *,
    system: str,
    config: RedmineConfig,
    project: str | None = None,
    own_user_id: int | None = None,
    since: datetime | None = None,
) -> Iterator[RecordComment]:
    """The journals of `GET /issues/N.json?include=journals` that carry notes (those that only
    change fields are the issue's record), created at or after `since`, as RecordComments."""
    key = issue_key(issue)
    journals = issue.get("journals")
    if not isinstance(journals, list):
        return
    visibility = issue_visibility(issue, config, project=project)
    for journal in journals:
        if not isinstance(journal, Mapping) or journal.get("id") in (None, ""):
            continue
        notes = journal.get("notes")
        if not isinstance(notes, str) or not notes.strip():
            continue
        created_at = parse_redmine_time(journal.get("created_on"))
        if since is not None and (created_at is None or created_at < since):
            continue
        private = journal.get("private_notes") is True
        user = journal.get("user")
        yield RecordComment(
            ref=RecordRef(system=system, key=key),
            comment_id=str(journal["id"]),
            author=_name(user),
            body=notes,
            public=not private,
            visibility=narrowest(visibility, config.private_notes_visibility) if private else visibility,
            by_threadlink=own_user_id is not None and isinstance(user, Mapping) and user.get("id") == own_user_id,
            created_at=created_at,
            version=version_of(created_at),
        )


def thread_marker(thread: ThreadRef) -> str:
    """The tag at the end of the subject of the ticket opened for a thread: how a retry finds it
    (Redmine's `subject=~<text>` filter) instead of opening a second one."""
    return "tl-" + hashlib.sha256(thread.id.encode()).hexdigest()[:16]


def ticket_subject(summary: str, thread: ThreadRef) -> str:
    words = " ".join(summary.split())[:MAX_SUBJECT_CHARS] or f"Thread from {thread.platform}"
    return f"{words} [{thread_marker(thread)}]"


def backlink_note(thread: ThreadRef | None, *, permalink: str | None = None, text: str = "") -> str:
    """The note of a back-link: the command's words, then the thread's link (or its id)."""
    intro = text.strip() or (f"Discussed in a {thread.platform} thread" if thread else "Discussed in a thread")
    if len(intro) > MAX_NOTE_CHARS:
        intro = intro[: MAX_NOTE_CHARS - 1] + "…"
    if permalink and permalink.startswith(("https://", "http://")):
        return f"{intro} {permalink}"
    return f"{intro} {thread.id}" if thread is not None else intro
