"""The link flow's decisions, without Kafka: mentions, waiting and fetching, stale records,
the loop back from the sinks' outcomes, edits and deletions, limits, visibility."""

from __future__ import annotations

import pytest

from schemas.commands import FetchRecord, PostCard
from schemas.outcomes import Effect
from schemas.records import RecordMissing, RecordRef
from schemas.social import (
    Author,
    SocialAction,
    SocialChannelChange,
    SocialEvent,
    SocialMembership,
    SocialReaction,
)
from streams.state import MAX_WAITING, ThreadState
from tests.unit.streams.flowkit import NAMES, Desk, commands, envelope, kinds, thread, ticket
from threadlink.config import LimitSettings, StreamSettings

pytestmark = pytest.mark.unit


def test_a_known_record_gets_a_card_and_the_record_a_backlink() -> None:
    desk = Desk()
    desk.record(ticket())
    emits = desk.say("Is this PROJ-1?")
    assert kinds(emits) == [NAMES.link_requests, "post_card", "add_comment"]
    card = commands(emits, "post_card")[0]
    assert card.topic == NAMES.commands("slack") and card.key == thread().id
    assert card.envelope.data.reply_key == "jira:PROJ-1"  # the outcome comes back to the record's state
    backlink = commands(emits, "add_comment")[0]
    assert backlink.topic == NAMES.commands("jira") and backlink.envelope.data.permalink
    assert desk.record_state().cards[thread().id].status == "requested"


def test_a_second_mention_in_the_same_thread_is_no_second_card() -> None:
    desk = Desk()
    desk.record(ticket())
    first = desk.say("PROJ-1 again", message_id="1.1")
    again = desk.say("still PROJ-1", message_id="1.2")
    assert commands(first, "post_card") and not commands(again)
    assert desk.record_state().cards[thread().id].mentioned_by == ["1.1", "1.2"]


def test_an_unknown_record_waits_for_one_fetch_and_every_waiting_thread_gets_its_card() -> None:
    desk = Desk()
    first = desk.say("what is PROJ-1?", where=thread("C1"))
    second = desk.say("PROJ-1 here too", where=thread("C2"))
    assert kinds(first) == [NAMES.link_requests, "fetch_record"]
    assert kinds(second) == [NAMES.link_requests]  # one fetch at a time
    released = desk.record(ticket())
    assert sorted(e.key for e in commands(released, "post_card")) == sorted([thread("C1").id, thread("C2").id])
    assert desk.record_state().waiting == []


def test_a_fetch_that_failed_for_good_is_asked_again_by_the_next_mention() -> None:
    desk = Desk()
    fetch = commands(desk.say("PROJ-1?", where=thread("C1")), "fetch_record")[0]
    desk.outcome(fetch, "failed", error_kind="retries_exhausted", reason="jira GET issue: HTTP 503")
    again = commands(desk.say("PROJ-1!", where=thread("C2")), "fetch_record")
    assert len(again) == 1 and again[0].envelope.data.command_id != fetch.envelope.data.command_id
    # Both threads still wait, and both get the card when the record comes.
    assert len(commands(desk.record(ticket()), "post_card")) == 2


def test_waiting_mentions_are_bounded() -> None:
    desk = Desk()
    for n in range(MAX_WAITING + 50):
        desk.say("PROJ-1?", where=thread(f"C{n}"))
    state = desk.record_state()
    assert len(state.waiting) == MAX_WAITING
    assert state.waiting[-1].thread.channel == f"C{MAX_WAITING + 49}"  # the oldest went first


def test_a_missing_record_gets_no_card_and_is_not_looked_up_again_at_once() -> None:
    desk = Desk()
    desk.say("PROJ-1?")
    assert desk.record(RecordMissing(ref=RecordRef(system="jira", key="PROJ-1"), reason="not found")) == []
    assert desk.record_state().waiting == []
    assert kinds(desk.say("PROJ-1??", where=thread("C2"))) == [NAMES.link_requests]


def test_an_older_version_never_replaces_a_newer_one() -> None:
    desk = Desk()
    desk.record(ticket(version=5, status="Done"))
    assert desk.record(ticket(version=3, status="Open")) == []
    assert desk.record_state().record.status == "Done"
    # A deletion older than the stored record is stale too.
    desk.record(RecordMissing(ref=RecordRef(system="jira", key="PROJ-1"), reason="deleted", version=4))
    assert desk.record_state().record is not None
    desk.record(RecordMissing(ref=RecordRef(system="jira", key="PROJ-1"), reason="deleted", version=6))
    assert desk.record_state().record is None and desk.record_state().missing == "deleted"


def test_the_outcome_of_a_card_stores_its_message_id_and_a_link() -> None:
    desk = Desk()
    desk.record(ticket())
    post = commands(desk.say("PROJ-1"), "post_card")[0]
    emits = desk.outcome(post, effect=Effect(message_id="200.000002"))
    card = desk.record_state().cards[thread().id]
    assert (card.status, card.card_message_id, card.version_shown) == ("posted", "200.000002", 1)
    assert [e.envelope.data.status for e in emits if e.topic == NAMES.links] == ["posted"]


def test_a_card_that_failed_for_good_is_not_posted_and_the_next_mention_tries_again() -> None:
    desk = Desk()
    desk.record(ticket())
    post = commands(desk.say("PROJ-1", message_id="1.1"), "post_card")[0]
    emits = desk.outcome(post, "failed", error_kind="skippable", reason="slack chat.postMessage: not_in_channel")
    card = desk.record_state().cards[thread().id]
    assert (card.status, card.reason) == ("failed", "slack chat.postMessage: not_in_channel")
    assert [e.envelope.data.status for e in emits if e.topic == NAMES.links] == ["failed"]
    retry = commands(desk.say("PROJ-1 please", message_id="1.2"), "post_card")
    assert [e.envelope.data.command_id for e in retry] == [post.envelope.data.command_id]


def test_an_edit_that_drops_the_name_deletes_the_card_and_one_that_adds_a_name_links_it() -> None:
    desk = Desk()
    desk.record(ticket("PROJ-1"))
    desk.record(ticket("PROJ-2"))
    desk.post_cards(desk.say("PROJ-1", message_id="1.1"))
    card_id = desk.record_state("jira:PROJ-1").cards[thread().id].card_message_id
    emits = desk.say("PROJ-2 actually", message_id="1.1", action="edited")
    deletes = commands(emits, "delete_card")
    assert [d.envelope.data.card_message_id for d in deletes] == [card_id]
    assert [e.key for e in commands(emits, "post_card")] == [thread().id]
    assert desk.record_state("jira:PROJ-2").cards[thread().id].status == "requested"
    desk.outcome(deletes[0])
    gone = desk.record_state("jira:PROJ-1").cards[thread().id]
    assert (gone.status, gone.card_message_id) == ("removed", None)


def test_a_deleted_message_removes_its_cards_unless_another_message_still_names_the_record() -> None:
    desk = Desk()
    desk.record(ticket("PROJ-1"))
    desk.record(ticket("PROJ-2"))
    desk.post_cards(desk.say("PROJ-1 and PROJ-2", message_id="1.1"))
    desk.say("PROJ-2 is the one", message_id="1.2")
    emits = desk.say("", message_id="1.1", action="deleted")
    assert [d.envelope.data.record.key for d in commands(emits, "delete_card")] == ["PROJ-1"]
    assert desk.record_state("jira:PROJ-2").cards[thread().id].status == "posted"


def test_an_edit_without_state_uses_the_platform_s_previous_text() -> None:
    desk = Desk()
    desk.record(ticket())
    desk.post_cards(desk.say("PROJ-1", message_id="1.1"))
    desk.threads.clear()  # e.g. the message is older than what the thread state keeps
    emits = desk.say("nothing", message_id="1.1", action="edited", previous_text="PROJ-1")
    assert kinds(commands(emits)) == ["delete_card"]


def test_a_card_removed_while_being_posted_is_deleted_once_posted() -> None:
    desk = Desk()
    desk.record(ticket())
    post = commands(desk.say("PROJ-1", message_id="1.1"), "post_card")[0]
    desk.say("", message_id="1.1", action="deleted")
    emits = desk.outcome(post, effect=Effect(message_id="9.9"))
    assert [e.envelope.data.card_message_id for e in commands(emits, "delete_card")] == ["9.9"]


def test_a_record_named_again_after_its_card_was_removed_gets_a_new_card() -> None:
    desk = Desk()
    desk.record(ticket())
    first = commands(desk.say("PROJ-1", message_id="1.1"), "post_card")[0]
    desk.outcome(first)
    desk.outcome(commands(desk.say("", message_id="1.1", action="deleted"), "delete_card")[0])
    again = commands(desk.say("PROJ-1 again", message_id="1.2"), "post_card")
    assert len(again) == 1 and again[0].envelope.data.command_id != first.envelope.data.command_id


def test_threadlink_s_own_messages_are_never_answered() -> None:
    desk = Desk()
    desk.record(ticket())
    assert desk.say("PROJ-1: Title (Open)", own=True) == []


def test_mentions_per_message_are_capped_and_so_are_fetches() -> None:
    settings = StreamSettings(limits=LimitSettings(mentions_per_message=10, fetches_per_message=3))
    desk = Desk(settings=settings)
    emits = desk.say(" ".join(f"PROJ-{n}" for n in range(1, 501)))
    assert len([e for e in emits if e.topic == NAMES.link_requests]) == 10
    assert len(commands(emits, "fetch_record")) == 3


def test_a_restricted_record_is_hidden_in_a_more_public_place_and_shown_once_it_may_be() -> None:
    desk = Desk()
    desk.record(ticket(visibility="restricted"))
    hidden = desk.say("PROJ-1", visibility="internal")
    assert not commands(hidden) and desk.record_state().cards[thread().id].status == "hidden"
    shown = desk.record(ticket(version=2, visibility="internal"))
    assert kinds(commands(shown)) == ["post_card", "add_comment"]


def test_a_restricted_record_shows_in_a_restricted_place() -> None:
    desk = Desk()
    desk.record(ticket(visibility="restricted"))
    assert commands(desk.say("PROJ-1", visibility="restricted"), "post_card")


def test_an_internal_record_never_shows_in_a_channel_shared_outside_the_organisation() -> None:
    desk = Desk()
    desk.record(ticket())
    assert not commands(desk.say("PROJ-1", visibility="public"))


def test_a_private_thread_is_not_named_on_the_record_it_discusses() -> None:
    desk = Desk()
    desk.record(ticket())  # internal: the whole company reads its comments
    backlink = commands(desk.say("PROJ-1", visibility="restricted"), "add_comment")[0].envelope.data
    assert backlink.permalink is None and backlink.thread is None and "private" in backlink.body


def test_command_ids_are_deterministic() -> None:
    def decide() -> list[str]:
        desk = Desk()
        desk.record(ticket())
        return [e.envelope.data.command_id for e in commands(desk.say("PROJ-1"))]

    assert decide() == decide()


def test_outputs_are_valid_commands() -> None:
    desk = Desk()
    emits = desk.say("PROJ-9?")
    (fetch,) = commands(emits, "fetch_record")
    assert isinstance(fetch.envelope.data, FetchRecord) and fetch.envelope.id == fetch.envelope.data.command_id
    desk.record(ticket("PROJ-9"))
    assert all(
        isinstance(e.envelope.data, PostCard) for e in commands(desk.say("PROJ-9", where=thread("C9")), "post_card")
    )


@pytest.mark.parametrize(
    "event",
    [
        SocialReaction(thread=thread(), message_id="1.1", reaction="eyes", author=Author(id="U1")),
        SocialMembership(channel=thread().channel_ref, member=Author(id="U1")),
        SocialChannelChange(channel=thread().channel_ref, action="renamed", name="support-escalations"),
        SocialAction(thread=thread(), message_id="1.1", action_id="threadlink.follow", author=Author(id="U1")),
    ],
    ids=["reaction", "membership", "channel", "action"],
)
def test_social_events_other_than_messages_make_no_links(event: SocialEvent) -> None:
    desk = Desk()
    desk.record(ticket())
    assert desk.flow.on_social(ThreadState(), envelope(event)) == []


def test_a_github_issue_named_by_url_or_short_reference_is_fetched_from_github_and_gets_one_card() -> None:
    """GitHub plugs in like Jira, by configuration only: its patterns (docs/connectors/github.md)
    name records of the `github` connector, and the flow asks that connector's sink for them."""
    github = {"system": "github", "key": "{owner}/{repo}#{number}", "lowercase": True}
    short = (
        r"(?<![\w./-])"
        r"(?P<owner>[A-Za-z0-9][A-Za-z0-9-]{0,38})/(?P<repo>[A-Za-z0-9._-]{1,100})#(?P<number>[1-9][0-9]{0,9})\b"
    )
    url = r"https://github\.com/(?P<owner>[A-Za-z0-9][A-Za-z0-9-]{0,38})/(?P<repo>[A-Za-z0-9._-]{1,100})/issues/(?P<number>[1-9][0-9]{0,9})\b"
    settings = StreamSettings(
        mention_patterns=[
            {"system": "jira", "regex": r"\b[A-Z][A-Z0-9]{1,9}-[1-9][0-9]{0,8}\b"},
            {**github, "regex": short},
            {**github, "regex": url},
        ]
    )
    desk = Desk(settings=settings)
    emits = desk.say("Same as <https://github.com/Acme/Shop/issues/12> and acme/shop#12? Also PROJ-1")
    fetches = commands(emits, "fetch_record")
    assert sorted((f.topic, f.envelope.data.record.id) for f in fetches) == [
        (NAMES.commands("github"), "github:acme/shop#12"),
        (NAMES.commands("jira"), "jira:PROJ-1"),
    ]
    issue = ticket(
        "acme/shop#12", ref=RecordRef(system="github", key="acme/shop#12"), url="https://github.com/acme/shop/issues/12"
    )
    released = desk.record(issue)
    (card,) = commands(released, "post_card")
    assert (
        card.topic == NAMES.commands("slack")
        and card.envelope.data.record.url == "https://github.com/acme/shop/issues/12"
    )
    assert [c.topic for c in commands(released, "add_comment")] == [NAMES.commands("github")]


def test_a_thread_naming_a_known_record_tells_its_own_key_for_reachs_rules_on_records_once() -> None:
    rule = {
        "name": "billing",
        "match": {"labels": ["billing"]},
        "notify": [{"platform": "slack", "workspace": "T1", "channel": "CL"}],
    }
    desk = Desk(settings=StreamSettings(reach={"rules": [rule]}))
    desk.record(ticket(labels=["billing"], visibility="restricted"))
    first = desk.say("Is this PROJ-1?", message_id="1.1")
    linked = [e for e in first if e.topic == NAMES.social_events]
    assert len(linked) == 1 and linked[0].key == thread().id
    event = linked[0].envelope.data
    assert (event.record.id, event.record_kind, event.labels) == ("jira:PROJ-1", "ticket", ["billing"])
    assert event.record_visibility == "restricted" and event.message_id == "1.1"
    assert [e for e in desk.say("PROJ-1 again", message_id="1.2") if e.topic == NAMES.social_events] == []


def test_without_rules_on_records_no_link_is_told_to_the_thread() -> None:
    desk = Desk()
    desk.record(ticket(labels=["billing"]))
    assert [e for e in desk.say("Is this PROJ-1?") if e.topic == NAMES.social_events] == []
