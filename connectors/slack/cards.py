"""The card threadlink posts into a thread for a ticket: one Block Kit section, plus the
plain-text fallback Slack shows in notifications and to clients without blocks.

    *<https://acme.atlassian.net/browse/PROJ-1|PROJ-1>* Login fails on Safari
    Status: In Progress    Assignee: Ada    Priority: High
"""

from __future__ import annotations

from typing import Any

from schemas.records import TicketRecord

#: Slack's limit on a section's text is 3000 characters; a title never needs that many.
MAX_TITLE = 200


def escape(text: str) -> str:
    """Slack mrkdwn needs only these three escaped (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _title(record: TicketRecord) -> str:
    title = " ".join(record.title.split())
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…"


def card_text(record: TicketRecord) -> str:
    """The fallback, e.g. `PROJ-1: Title (In Progress)`."""
    status = f" ({record.status})" if record.status else ""
    return escape(f"{record.ref.key}: {_title(record)}{status}")


def card_blocks(record: TicketRecord) -> list[dict[str, Any]]:
    key = escape(record.ref.key)
    # A `|` would end the link's address early; such a URL is left out rather than mangled.
    heading = f"*<{escape(record.url)}|{key}>*" if record.url and "|" not in record.url else f"*{key}*"
    section: dict[str, Any] = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": f"{heading} {escape(_title(record))}"},
    }
    fields = [
        {"type": "mrkdwn", "text": f"*{label}*\n{escape(value)}"}
        for label, value in (
            ("Status", record.status),
            ("Assignee", record.assignee or "Unassigned"),
            ("Priority", record.priority),
        )
        if value
    ]
    section["fields"] = fields
    return [section]


def render_card(record: TicketRecord) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) for chat.postMessage / chat.update."""
    return card_text(record), card_blocks(record)
