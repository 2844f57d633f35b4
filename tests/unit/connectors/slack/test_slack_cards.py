from __future__ import annotations

import pytest

from connectors.slack.cards import (
    MAX_BLOCK_ID,
    MAX_TITLE,
    card_block_id,
    card_blocks,
    card_text,
    is_card_of,
    render_card,
)
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


def test_card_is_a_section_with_link_title_and_fields_and_a_follow_button() -> None:
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
        },
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": "threadlink.follow",
                    "text": {"type": "plain_text", "text": "Follow"},
                    "value": "jira:PROJ-1",
                }
            ],
        },
    ]


def test_fallback_text() -> None:
    assert card_text(ticket()) == "PROJ-1: Login fails on Safari (In Progress)"
    assert card_text(ticket(status=None)) == "PROJ-1: Login fails on Safari"
    assert render_card(ticket())[0] == card_text(ticket())


def test_missing_values_are_left_out_and_nobody_means_unassigned() -> None:
    section, _follow = card_blocks(ticket(status=None, priority=None, assignee=None, url=None))
    assert section["text"]["text"] == "*PROJ-1* Login fails on Safari"
    assert section["fields"] == [{"type": "mrkdwn", "text": "*Assignee*\nUnassigned"}]


def test_mrkdwn_is_escaped_so_titles_cannot_inject_links_or_mentions() -> None:
    section, _follow = card_blocks(ticket(title="<!channel> a & b <https://evil|click>"))
    assert section["text"]["text"].endswith("&lt;!channel&gt; a &amp; b &lt;https://evil|click&gt;")
    assert card_text(ticket(title="a < b")) == "PROJ-1: a &lt; b (In Progress)"


def test_a_url_that_would_break_the_link_is_left_out() -> None:
    section, _follow = card_blocks(ticket(url="https://x/a|b"))
    assert section["text"]["text"].startswith("*PROJ-1* ")


def test_long_titles_are_shortened() -> None:
    section, _follow = card_blocks(ticket(title="word " * 200))
    title = section["text"]["text"].split("* ", 1)[1]
    assert len(title) == MAX_TITLE and title.endswith("…")


def test_a_posted_card_is_tagged_with_its_command_id() -> None:
    text, blocks = render_card(ticket(), "post_card-0123abcd")
    assert blocks[0]["block_id"] == "tl-post_card-0123abcd" == card_block_id("post_card-0123abcd")
    assert [{k: v for k, v in b.items() if k != "block_id"} for b in blocks] == card_blocks(ticket())
    assert text == card_text(ticket())
    assert render_card(ticket(), "post_card-0123abcd") == (text, blocks)  # same command, same tag


def test_a_tag_never_exceeds_slacks_limit() -> None:
    fits = "c" * (MAX_BLOCK_ID - 3)
    assert card_block_id(fits) == "tl-" + fits
    too_long = fits + "c"
    tag = card_block_id(too_long)
    assert tag.startswith("tl-sha256-") and len(tag) <= MAX_BLOCK_ID
    assert tag == card_block_id(too_long) != card_block_id(too_long + "d")


def test_is_card_of_reads_the_first_blocks_tag() -> None:
    _text, blocks = render_card(ticket(), "p1")
    assert is_card_of({"blocks": blocks}, "p1")
    assert not is_card_of({"blocks": blocks}, "p2")
    assert not is_card_of({"blocks": [{"type": "divider"}, *blocks]}, "p1")
    assert not is_card_of({"text": "no blocks"}, "p1")
    assert not is_card_of({"blocks": "not a list"}, "p1")


def test_cards_of_records_that_are_not_tickets_offer_to_open_a_ticket() -> None:
    from schemas.records import ArticleRecord

    article = ArticleRecord.model_validate(
        {"ref": {"system": "wp", "key": "42"}, "title": "Resetting a password", "url": "https://wiki/42"}
    )
    _section, buttons = card_blocks(article)
    assert [b["action_id"] for b in buttons["elements"]] == ["threadlink.follow", "threadlink.open_ticket"]
    _section, ticket_buttons = card_blocks(ticket())
    assert [b["action_id"] for b in ticket_buttons["elements"]] == ["threadlink.follow"]
