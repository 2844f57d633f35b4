"""Jira JSON to threadlink records, and the marks threadlink leaves on Jira (labels, entity
properties). Atlassian Document Format lives in connectors.jira.adf (re-exported here).

Pure functions: no I/O, so tests feed them captured payloads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors.errors import SkippableError
from connectors.jira.adf import MAX_TEXT_CHARS, adf_text, backlink_adf, text_adf
from connectors.jira.config import JiraConfig
from connectors.runtime.payloads import epoch_time, iso_time
from schemas.records import (
    MAX_FIELDS,
    DisplayField,
    RecordComment,
    RecordRef,
    TicketRecord,
    clip_value,
    version_of,
)
from schemas.social import ThreadRef
from schemas.visibility import Visibility, narrowest

__all__ = [
    "BACKLINK_PROPERTY",
    "MAX_TEXT_CHARS",
    "adf_text",
    "backlink_adf",
    "backlink_command_id",
    "backlink_property",
    "comment_from_webhook",
    "is_account",
    "issue_key",
    "project_of_key",
    "remote_link",
    "remote_link_global_id",
    "text_adf",
    "thread_label",
    "ticket_from_issue",
]

#: Key of the comment entity property that tags a back-link with the command that posted it.
BACKLINK_PROPERTY = "threadlink"


def parse_jira_time(value: Any) -> datetime | None:
    """Jira writes `2024-01-17T12:34:00.000+0000`; webhooks carry epoch milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return epoch_time(value, what="jira timestamp", unit_s=0.001)  # 1e300 or NaN: a 400, not an OverflowError
    return iso_time(value)


def project_of_key(key: str) -> str | None:
    """`OPS-12` -> `OPS`; a numeric issue id has no project in it."""
    project, sep, number = key.rpartition("-")
    return project.upper() if sep and project and number.isdigit() else None


def _name(value: Any, attribute: str) -> str | None:
    if isinstance(value, Mapping) and isinstance(value.get(attribute), str):
        return value[attribute]
    return None


def field_text(value: Any) -> str | None:
    """A Jira field's value as card text: a string or number, a user (displayName), an option
    or a status (value, name), a list of them, or an ADF document."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str | int | float):
        return str(value) or None
    if isinstance(value, Mapping):
        if value.get("type") == "doc":
            return adf_text(value) or None
        for attribute in ("displayName", "value", "name", "key"):
            if isinstance(value.get(attribute), str | int | float) and not isinstance(value.get(attribute), bool):
                return str(value[attribute])
        return None
    if isinstance(value, list):
        parts = [text for text in (field_text(item) for item in value[:20]) if text]
        return ", ".join(parts) or None
    return None


def issue_key(issue: Any) -> str:
    if not isinstance(issue, Mapping) or not isinstance(issue.get("key"), str) or not issue["key"]:
        raise SkippableError("jira issue without a key")
    return issue["key"]


def ticket_from_issue(issue: Any, *, system: str, config: JiraConfig) -> TicketRecord:
    """An IssueBean (REST) or a webhook's `issue` as a TicketRecord. SkippableError when it
    has no key or no fields."""
    key = issue_key(issue)
    fields = issue.get("fields")
    if not isinstance(fields, Mapping):
        raise SkippableError(f"jira issue {key} without fields")
    project = _name(fields.get("project"), "key") or project_of_key(key)
    summary = fields.get("summary")
    updated_at = parse_jira_time(fields.get("updated"))
    labels = fields.get("labels")
    mapped = config.fields
    record = TicketRecord(
        ref=RecordRef(system=system, key=key),
        title=summary if isinstance(summary, str) and summary else key,
        status=field_text(fields.get(mapped.status)),
        assignee=field_text(fields.get(mapped.assignee)),
        priority=field_text(fields.get(mapped.priority)),
        project=project,
        labels=[label[:100] for label in labels if isinstance(label, str)][:50] if isinstance(labels, list) else [],
        url=f"{config.base_url}/browse/{key}",
        updated_at=updated_at,
        version=version_of(updated_at),
        visibility=config.visibility_of(project),
    )
    shown = [(f"jira.{f.field}", f.label, field_text(fields.get(f.field))) for f in mapped.shown]
    extra = [DisplayField(name=name, label=label, value=clip_value(value)) for name, label, value in shown if value]
    if extra:
        record.fields = [*record.fields, *extra][:MAX_FIELDS]
    return record


def is_account(user: Any, *, account_id: str | None, email: str | None) -> bool:
    """Whether a Jira user object (a comment's author) is the given account: by its accountId, or
    by its email where Jira shows it (its users' privacy settings may hide it)."""
    if not isinstance(user, Mapping):
        return False
    if account_id and user.get("accountId") == account_id:
        return True
    address = user.get("emailAddress")
    return bool(email and isinstance(address, str) and address.lower() == email.lower())


def comment_from_webhook(
    payload: Mapping[str, Any],
    *,
    system: str,
    project_visibility: Visibility = "internal",
    own_account_id: str | None = None,
    own_email: str | None = None,
) -> RecordComment:
    """A `comment_created` webhook as a RecordComment. Jira Cloud sends the comment body as a
    string in webhooks (ADF in REST v3 answers); both are accepted. A comment threadlink's own
    account wrote (its back-links: webhooks carry no entity properties) is marked
    `by_threadlink`, so it is never mirrored back."""
    key = issue_key(payload.get("issue"))
    comment = payload.get("comment")
    if not isinstance(comment, Mapping) or comment.get("id") in (None, ""):
        raise SkippableError(f"jira comment webhook for {key} without a comment id")
    created_at = parse_jira_time(comment.get("created"))
    return RecordComment(
        ref=RecordRef(system=system, key=key),
        comment_id=str(comment["id"]),
        author=_name(comment.get("author"), "displayName"),
        body=adf_text(comment.get("body")),
        public=comment_is_public(comment),
        visibility=comment_visibility(comment, project_visibility),
        by_threadlink=backlink_command_id(comment) is not None
        or is_account(comment.get("author"), account_id=own_account_id, email=own_email),
        created_at=created_at,
        version=version_of(parse_jira_time(comment.get("updated")) or created_at),
    )


def comment_is_public(comment: Mapping[str, Any]) -> bool:
    """False for Service Management internal notes and comments restricted to a group or role."""
    return comment.get("jsdPublic", True) is not False and not comment.get("visibility")


def comment_visibility(comment: Mapping[str, Any], project_visibility: Visibility) -> Visibility:
    if comment.get("visibility"):
        return "restricted"
    if comment.get("jsdPublic") is False:
        return narrowest(project_visibility, "internal")
    return project_visibility


def thread_label(thread: ThreadRef) -> str:
    """The label of the ticket opened for a thread: how a retry finds it instead of opening a
    second (labels are searchable with JQL; entity properties of REST clients are not)."""
    return "threadlink-" + hashlib.sha256(thread.id.encode()).hexdigest()[:20]


def remote_link_global_id(thread: ThreadRef) -> str:
    """The globalId of an issue's link to a thread: Jira updates the link with the same
    globalId instead of adding a second, so a retry (or a second mention) keeps one link."""
    return "threadlink:thread=" + hashlib.sha256(thread.id.encode()).hexdigest()[:40]


def remote_link(thread: ThreadRef | None, *, permalink: str | None, text: str = "") -> dict[str, Any] | None:
    """The RemoteIssueLinkRequest linking an issue to a thread, or None without a thread or an
    http(s) permalink to link to."""
    if thread is None or not permalink or not permalink.startswith(("https://", "http://")):
        return None
    title = f"{thread.platform.title()} thread in {thread.channel}"
    link: dict[str, Any] = {
        "globalId": remote_link_global_id(thread),
        "application": {"type": "io.threadlink", "name": "threadlink"},
        "relationship": "discussed in",
        "object": {"url": permalink, "title": title[:255]},
    }
    summary = " ".join(text.split())
    if summary:
        link["object"]["summary"] = summary[:255]
    return link


def backlink_property(command_id: str) -> dict[str, Any]:
    """The entity properties of a back-link comment (key -> value): the id of the command that
    posts it, so a retry after an answer that got lost can find it instead of posting again."""
    return {BACKLINK_PROPERTY: {"command_id": command_id}}


def backlink_command_id(comment: Any) -> str | None:
    """The command id a comment was tagged with by `backlink_property`, read from a Comment
    listed with its properties (`[{key, value}]`); None for any other comment."""
    properties = comment.get("properties") if isinstance(comment, Mapping) else None
    if not isinstance(properties, list):
        return None
    for prop in properties:
        if isinstance(prop, Mapping) and prop.get("key") == BACKLINK_PROPERTY:
            value = prop.get("value")
            command_id = value.get("command_id") if isinstance(value, Mapping) else None
            return command_id if isinstance(command_id, str) else None
    return None
