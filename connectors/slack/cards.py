"""The card threadlink posts into a thread for a record of any kind: one Block Kit section
made of the record's title and its display fields, and a "Follow" button, plus the plain-text
fallback Slack shows in notifications and to clients without blocks.

    *<https://acme.atlassian.net/browse/PROJ-1|PROJ-1>* Login fails on Safari
    Status: In Progress    Assignee: Ada    Priority: High

A redacted card (a restricted record in a place too public for it) names the record and says it
is restricted, nothing more.

A posted card's first block carries `block_id = "tl-" + command_id` (`card_block_id`).
chat.postMessage has no idempotency key, but Slack keeps a block_id it is given and returns it
with the message, so a retry whose earlier attempt may have posted the card can find it in the
thread (`is_card_of`) instead of posting a second one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from schemas.records import RecordBase

#: Slack's limit on a section's text is 3000 characters; a title never needs that many.
MAX_TITLE = 200
#: Slack's limit on a section's text.
MAX_SECTION_TEXT = 3000
#: What every card tag starts with.
BLOCK_ID_PREFIX = "tl-"
#: Slack's limit on a block_id (https://api.slack.com/reference/block-kit/blocks).
MAX_BLOCK_ID = 255


def escape(text: str) -> str:
    """Slack mrkdwn needs only these three escaped (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


#: Slack shows at most 10 fields in a section.
MAX_FIELDS = 10
REDACTED_TEXT = "restricted: open it in its own system to see it"


def _title(record: RecordBase) -> str:
    title = " ".join(record.title.split())
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…"


def card_text(record: RecordBase, *, redacted: bool = False) -> str:
    """The fallback, e.g. `PROJ-1: Title (In Progress)`."""
    if redacted:
        return escape(f"{record.ref.key}: {REDACTED_TEXT}")
    status = record.field_value("status")
    return escape(f"{record.ref.key}: {_title(record)}" + (f" ({status})" if status else ""))


def card_block_id(command_id: str) -> str:
    """The tag of the card `command_id` posts: `tl-<command_id>`, or `tl-sha256-<hex of the id>`
    when that would be longer than Slack allows. Same id, same tag: a retry can look for it."""
    block_id = BLOCK_ID_PREFIX + command_id
    if len(block_id) <= MAX_BLOCK_ID:
        return block_id
    return f"{BLOCK_ID_PREFIX}sha256-{hashlib.sha256(command_id.encode()).hexdigest()}"


def is_card_of(message: Mapping[str, Any], command_id: str) -> bool:
    """Whether a message, as Slack returns it (e.g. from conversations.replies), is the card
    that `command_id` posted: its first block carries the command's tag. Who posted it is for
    the caller to check."""
    blocks = message.get("blocks")
    if not isinstance(blocks, list) or not blocks or not isinstance(blocks[0], dict):
        return False
    return blocks[0].get("block_id") == card_block_id(command_id)


def card_blocks(record: RecordBase, command_id: str | None = None, *, redacted: bool = False) -> list[dict[str, Any]]:
    """The card's blocks; tagged with `command_id` (see `card_block_id`) when one is given."""
    key = escape(record.ref.key)
    section: dict[str, Any] = {"type": "section"}
    if command_id is not None:
        section["block_id"] = card_block_id(command_id)
    if redacted:
        section["text"] = {"type": "mrkdwn", "text": f":lock: *{key}* {REDACTED_TEXT}"}
        return [section]
    # A `|` would end the link's address early; such a URL is left out rather than mangled.
    heading = f"*<{escape(record.url)}|{key}>*" if record.url and "|" not in record.url else f"*{key}*"
    section["text"] = {"type": "mrkdwn", "text": f"{heading} {escape(_title(record))}"}
    fields = [
        {"type": "mrkdwn", "text": f"*{escape(field.label)}*\n{escape(field.value)}"}
        for field in record.fields[:MAX_FIELDS]
    ]
    if fields:  # Block Kit refuses an empty `fields` list
        section["fields"] = fields
    return [section, card_buttons(record)]


#: The card's controls; connectors/slack/interactivity.py publishes their presses.
FOLLOW_ACTION = "threadlink.follow"
OPEN_TICKET_ACTION = "threadlink.open_ticket"


def _button(action_id: str, label: str, value: str) -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": label}, "value": value}


def card_buttons(record: RecordBase) -> dict[str, Any]:
    """Follow: the person who presses it asks to hear of the record's changes. Open as ticket
    (on cards of records that are not tickets: an article, an order): the thread becomes a
    ticket (Escalate). Both are SocialActions whose value is the record's id."""
    value = record.ref.id[:2000]
    buttons = [_button(FOLLOW_ACTION, "Follow", value)]
    if getattr(record, "kind", None) != "ticket":
        buttons.append(_button(OPEN_TICKET_ACTION, "Open as ticket", value))
    return {"type": "actions", "elements": buttons}


def render_card(
    record: RecordBase, command_id: str | None = None, *, redacted: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) for chat.postMessage (tagged with the PostCard's `command_id`) and
    chat.update (untagged: an update is safe to repeat, and the card is found by its ts)."""
    return card_text(record, redacted=redacted), card_blocks(record, command_id, redacted=redacted)


#: Slack user ids (U..., W... on Enterprise Grid): nothing else may go inside a mention's brackets.
USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")


def plain_text(text: str) -> str:
    """A message's text, escaped for mrkdwn and cut to what a section takes."""
    text = escape(text)
    return text if len(text) <= MAX_SECTION_TEXT else text[: MAX_SECTION_TEXT - 1] + "…"


def with_mentions(text: str, mentions: list[str]) -> str:
    """`text` after Slack's mentions of `mentions` (user ids), which notify those people."""
    named = " ".join(f"<@{user}>" for user in mentions if USER_ID.fullmatch(user))
    return f"{named} {text}" if named else text


def message_block(text: str, command_id: str, mentions: list[str] | None = None) -> dict[str, Any]:
    """A short message as one tagged section (so a retry can find it, as with cards)."""
    return {
        "type": "section",
        "block_id": card_block_id(command_id),
        "text": {"type": "mrkdwn", "text": with_mentions(plain_text(text), mentions or [])},
    }
