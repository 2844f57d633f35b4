"""Follow's decisions, without Kafka: a changed record updates each card in place (once per
version, never going back), status changes get a reply, bursts carry what the sink needs to
coalesce them, comments show on the card unless they are internal, visibility narrows cards."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.outcomes import Effect
from schemas.records import RecordComment, RecordRef
from tests.unit.streams.flowkit import Desk, commands, thread, ticket
from threadlink.config import FollowSettings, StreamSettings

pytestmark = pytest.mark.unit


def posted(desk: Desk, *threads: str) -> None:
    """The record is known and has a posted card in each thread."""
    desk.record(ticket(version=1, status="Open", assignee="Ada"))
    for channel in threads or ("C1",):
        emits = desk.say("PROJ-1", where=thread(channel))
        for post in commands(emits, "post_card"):
            desk.outcome(post, effect=Effect(message_id=f"card-{channel}"))


def test_a_change_updates_every_card_in_place_with_the_version_in_its_id() -> None:
    desk = Desk()
    posted(desk, "C1", "C2")
    emits = desk.record(ticket(version=2, status="Open", assignee="Grace"))
    updates = commands(emits, "update_card")
    assert sorted(u.envelope.data.card_message_id for u in updates) == ["card-C1", "card-C2"]
    assert {u.envelope.data.record.version for u in updates} == {2}
    assert not commands(emits, "post_message")  # the assignee is not a notified field by default
    again = commands(desk.record(ticket(version=3, status="Open", assignee="Ada")), "update_card")
    assert {u.envelope.data.command_id for u in again}.isdisjoint(u.envelope.data.command_id for u in updates)


def test_updates_carry_their_window_and_coalescing_key() -> None:
    desk = Desk(settings=StreamSettings(follow=FollowSettings(window_s=2.0)))
    posted(desk)
    (update,) = commands(desk.record(ticket(version=2, status="Open", assignee="Grace")), "update_card")
    command = update.envelope.data
    assert command.not_before == update.envelope.received_at + timedelta(seconds=2)
    assert command.coalesce_key == f"card:{thread().id}|jira:PROJ-1" and command.coalesce_rank == 2
    assert update.key == thread().id  # in the thread's order, among its other commands


def test_a_burst_of_changes_gives_commands_that_supersede_each_other() -> None:
    desk = Desk()
    posted(desk)
    updates = []
    for version in range(2, 12):
        updates += commands(desk.record(ticket(version=version, status="Open", assignee=f"A{version}")), "update_card")
    assert len({u.envelope.data.coalesce_key for u in updates}) == 1
    assert [u.envelope.data.coalesce_rank for u in updates] == list(range(2, 12))


def test_the_same_state_again_updates_nothing() -> None:
    desk = Desk()
    posted(desk)
    assert desk.record(ticket(version=1, status="Open", assignee="Ada")) == []
    # A new version that shows the same card (a field no card shows changed): no update either.
    assert commands(desk.record(ticket(version=2, status="Open", assignee="Ada", labels=["x"]))) == []


def test_a_status_change_also_gets_a_short_reply() -> None:
    desk = Desk()
    posted(desk)
    emits = desk.record(ticket(version=2, status="In Progress", assignee="Ada"))
    (reply,) = commands(emits, "post_message")
    assert reply.envelope.data.text == "PROJ-1: Status Open → In Progress"
    assert reply.envelope.data.destination == thread()
    assert reply.envelope.data.coalesce_key.startswith("reply:")


def test_notified_fields_are_configurable() -> None:
    desk = Desk(settings=StreamSettings(follow=FollowSettings(notify_fields=["assignee"])))
    posted(desk)
    (reply,) = commands(desk.record(ticket(version=2, status="Done", assignee="Grace")), "post_message")
    assert reply.envelope.data.text == "PROJ-1: Assignee Ada → Grace"


def test_an_older_version_never_overwrites_a_newer_one() -> None:
    desk = Desk()
    posted(desk)
    desk.record(ticket(version=5, status="Done", assignee="Ada"))
    assert desk.record(ticket(version=4, status="Open", assignee="Ada")) == []


def test_a_card_still_being_posted_is_updated_once_its_outcome_says_where_it_is() -> None:
    desk = Desk()
    desk.record(ticket(version=1))
    post = commands(desk.say("PROJ-1"), "post_card")[0]
    assert commands(desk.record(ticket(version=2, status="Done"))) == []  # no message id yet
    (update,) = commands(desk.outcome(post, effect=Effect(message_id="c1")), "update_card")
    assert (update.envelope.data.card_message_id, update.envelope.data.record.version) == ("c1", 2)


def test_an_update_outcome_records_the_version_shown() -> None:
    desk = Desk()
    posted(desk)
    (update,) = commands(desk.record(ticket(version=2, status="Done")), "update_card")
    desk.outcome(update)
    card = desk.record_state().cards[thread().id]
    assert card.version_shown == 2 and card.digest_shown == card.digest_sent


def test_a_card_whose_message_is_gone_stops_following() -> None:
    desk = Desk()
    posted(desk)
    (update,) = commands(desk.record(ticket(version=2, status="Done")), "update_card")
    desk.outcome(update, "failed", error_kind="skippable", reason="slack chat.update: message_not_found")
    assert desk.record_state().cards[thread().id].status == "removed"
    assert commands(desk.record(ticket(version=3, status="Open"))) == []


def comment(version: int, *, public: bool = True, visibility: str = "internal", **values: object) -> RecordComment:
    return RecordComment.model_validate(
        {
            "ref": RecordRef(system="jira", key="PROJ-1"),
            "comment_id": f"c{version}",
            "author": "Grace",
            "body": "Fixed in build 42, please retry.",
            "public": public,
            "visibility": visibility,
            "version": version,
        }
        | values
    )


def test_a_public_comment_shows_on_the_card() -> None:
    desk = Desk()
    posted(desk)
    (update,) = commands(desk.comment(comment(version=10)), "update_card")
    shown = update.envelope.data.record
    assert shown.fields[-1].label == "Latest comment"
    assert shown.fields[-1].value == "Grace: Fixed in build 42, please retry."
    assert shown.version == 10


@pytest.mark.parametrize(
    "values", [{"public": False}, {"by_threadlink": True}, {"action": "deleted"}], ids=["internal", "own", "deleted"]
)
def test_internal_notes_and_our_own_comments_never_reach_the_thread(values: dict[str, object]) -> None:
    desk = Desk()
    posted(desk)
    assert desk.comment(comment(version=10, **values)) == []


def test_a_restricted_comment_is_not_shown_in_a_company_wide_channel() -> None:
    desk = Desk()
    posted(desk)
    assert commands(desk.comment(comment(version=10, visibility="restricted"))) == []


def test_a_record_that_becomes_restricted_is_redacted_on_cards_in_wider_places() -> None:
    desk = Desk()
    posted(desk)
    (update,) = commands(desk.record(ticket(version=2, status="Open", assignee="Ada", visibility="restricted")))
    assert update.envelope.data.redacted is True
    assert not commands(desk.record(ticket(version=2, status="Open", assignee="Ada", visibility="restricted")))


def test_cards_stop_following_after_follow_days() -> None:
    desk = Desk(settings=StreamSettings(follow=FollowSettings(follow_days=1)))
    posted(desk)
    desk.tick(2 * 24 * 3600)
    assert commands(desk.record(ticket(version=2, status="Done"))) == []
