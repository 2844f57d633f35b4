from __future__ import annotations

import pytest

from connectors.slack.cards import MAX_TITLE, card_blocks, card_text, render_card
from schemas.records import RecordRef, TicketRecord

pytestmark = pytest.mark.unit


def ticket(**overrides: object) -> TicketRecord:
    values: dict[str, object] = {
        "ref": RecordRef(system="jira", key="PROJ-1"),
        "title": "Login fails on Safari",
        "status": "In Progress",
        "assignee": "Ada Lovelace",
        "priority": "High",
        "url": "https://acme.atlassian.net/browse/PROJ-1",
    }
    values.update(overrides)
    return TicketRecord.model_validate(values)


def test_card_is_one_section_with_link_title_and_fields() -> None:
    assert card_blocks(ticket()) == [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*<https://acme.atlassian.net/browse/PROJ-1|PROJ-1>* Login fails on Safari",
            },
            "fields": [
                {"type": "mrkdwn", "text": "*Status*\nIn Progress"},
                {"type": "mrkdwn", "text": "*Assignee*\nAda Lovelace"},
                {"type": "mrkdwn", "text": "*Priority*\nHigh"},
            ],
        }
    ]


def test_fallback_text() -> None:
    assert card_text(ticket()) == "PROJ-1: Login fails on Safari (In Progress)"
    assert card_text(ticket(status=None)) == "PROJ-1: Login fails on Safari"
    assert render_card(ticket())[0] == card_text(ticket())


def test_missing_values_are_left_out_and_nobody_means_unassigned() -> None:
    (section,) = card_blocks(ticket(status=None, priority=None, assignee=None, url=None))
    assert section["text"]["text"] == "*PROJ-1* Login fails on Safari"
    assert section["fields"] == [{"type": "mrkdwn", "text": "*Assignee*\nUnassigned"}]


def test_mrkdwn_is_escaped_so_titles_cannot_inject_links_or_mentions() -> None:
    (section,) = card_blocks(ticket(title="<!channel> a & b <https://evil|click>"))
    assert section["text"]["text"].endswith("&lt;!channel&gt; a &amp; b &lt;https://evil|click&gt;")
    assert card_text(ticket(title="a < b")) == "PROJ-1: a &lt; b (In Progress)"


def test_a_url_that_would_break_the_link_is_left_out() -> None:
    (section,) = card_blocks(ticket(url="https://x/a|b"))
    assert section["text"]["text"].startswith("*PROJ-1* ")


def test_long_titles_are_shortened() -> None:
    (section,) = card_blocks(ticket(title="word " * 200))
    title = section["text"]["text"].split("* ", 1)[1]
    assert len(title) == MAX_TITLE and title.endswith("…")
