"""Escalate's decisions, without Kafka: triggers open one ticket per thread whoever asks and
however often, replies become comments (those said while it opens too), the ticket's public
comments come back attributed, and neither side echoes the other."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.commands import AddComment, CreateTicket, PostMessage
from schemas.outcomes import Effect, Outcome
from schemas.records import RecordComment, RecordRef
from schemas.social import Author, SocialAction, SocialMessage, SocialReaction
from streams.flows.emit import Emit, Emitter
from streams.flows.escalate import Escalate
from streams.state import ThreadState
from tests.unit.streams.flowkit import NAMES, Desk, commands, envelope, thread, ticket
from threadlink.config import EscalateSettings, StreamSettings

pytestmark = pytest.mark.unit

TICKET = RecordRef(system="jira", key="SUP-7")


class Room:
    """One thread's state and the Escalate flow, fed one event at a time."""

    def __init__(self, **settings: Any) -> None:
        self.flow = Escalate(Emitter(NAMES), EscalateSettings(target="jira", project="SUP", **settings))
        self.state = ThreadState()
        self.where = thread()
        self.n = 0

    def say(self, text: str, *, who: str = "Ada", own: bool = False, action: str = "posted", **kw: Any) -> list[Emit]:
        self.n += 1
        message = SocialMessage(
            thread=self.where,
            message_id=kw.pop("message_id", f"100.{self.n:06d}"),
            action=action,  # type: ignore[arg-type]
            author=Author(id=f"U-{who}", display_name=who, is_threadlink=own),
            text=text,
            **kw,
        )
        return self.flow.on_social(self.state, envelope(message))

    def react(self, name: str = "ticket", *, own: bool = False, action: str = "added") -> list[Emit]:
        reaction = SocialReaction(
            thread=self.where,
            message_id="100.000001",
            action=action,  # type: ignore[arg-type]
            reaction=name,
            author=Author(id="U2", display_name="Grace", is_threadlink=own),
        )
        return self.flow.on_social(self.state, envelope(reaction))

    def press(self, action_id: str = "threadlink.open_ticket") -> list[Emit]:
        pressed = SocialAction(
            thread=self.where, message_id="card", action_id=action_id, author=Author(id="U3", display_name="Lin")
        )
        return self.flow.on_social(self.state, envelope(pressed))

    def opened(self, create: Emit, status: str = "done", **values: Any) -> list[Emit]:
        command = create.envelope.data
        effect = Effect(created=TICKET, url="https://jira.example/browse/SUP-7") if status == "done" else None
        outcome = Outcome(
            command_id=command.command_id,
            command_kind="create_ticket",
            target="jira",
            status=status,  # type: ignore[arg-type]
            effect=effect,
            destination=command.thread,
            completed_at=envelope(None).received_at,
            **values,
        )
        return self.flow.on_outcome(self.state, envelope(outcome))


def only(emits: list[Emit], kind: str) -> Any:
    [emit] = commands(emits, kind)
    return emit.envelope.data


@pytest.mark.parametrize(
    "trigger",
    [
        lambda room: room.react("ticket"),
        lambda room: room.say("<@UBOT> ticket please", mentions_threadlink=True),
        lambda room: room.press(),
    ],
    ids=["reaction", "command", "card_button"],
)
def test_each_trigger_opens_a_ticket_with_the_transcript(trigger: Any) -> None:
    room = Room()
    room.say("Checkout fails for card payments")
    room.say("Since 9:00, all shops", who="Grace")
    create: CreateTicket = only(trigger(room), "create_ticket")
    assert (create.target, create.project, create.thread) == ("jira", "SUP", room.where)
    assert create.summary == "Checkout fails for card payments"
    assert "Ada: Checkout fails for card payments\nGrace: Since 9:00, all shops" in create.description
    assert create.reply_key == room.where.id


def test_the_message_that_asked_gets_threadlinks_eyes_at_once_and_a_button_press_none() -> None:
    room = Room()
    room.say("Checkout fails")
    [seen] = [e.envelope.data for e in commands(room.react("ticket"), "add_reaction")]
    assert (seen.message_id, seen.reaction, seen.destination, seen.target) == (
        "100.000001",
        "eyes",
        room.where,
        "slack",
    )
    room = Room()
    emits = room.say("<@UBOT> ticket", mentions_threadlink=True)
    assert [e.envelope.data.message_id for e in commands(emits, "add_reaction")] == ["100.000001"]
    assert commands(Room().press(), "add_reaction") == []  # the button's card says it itself
    assert commands(Room(acknowledge=None).react("ticket"), "add_reaction") == []


def test_a_second_trigger_or_a_redelivery_asks_for_nothing_more() -> None:
    room = Room()
    first = commands(room.react(), "create_ticket")
    assert len(first) == 1
    assert room.react() == [] and room.press() == []
    assert room.say("<@UBOT> ticket", mentions_threadlink=True) == []


def test_other_reactions_a_removed_reaction_and_threadlinks_own_do_nothing() -> None:
    room = Room()
    assert room.react("eyes") == []
    assert room.react("ticket", action="removed") == []
    assert room.react("ticket", own=True) == []
    assert room.say("ticket", mentions_threadlink=False) == []  # not addressed to threadlink
    assert room.press("threadlink.follow") == []
    assert room.state.escalation is None


def test_off_without_a_target() -> None:
    room = Room()
    room.flow = Escalate(Emitter(NAMES), EscalateSettings())
    assert room.react() == []


def test_the_opened_ticket_is_announced_linked_with_comment_mirroring_and_replies_become_comments() -> None:
    room = Room()
    create = commands(room.react(), "create_ticket")[0]
    room.say("also on mobile", who="Grace")  # while it opens: waits
    emits = room.opened(create)
    said: PostMessage = only(emits, "post_message")
    assert said.text == "Opened SUP-7: https://jira.example/browse/SUP-7"
    [link] = [e for e in emits if e.topic == NAMES.link_requests]
    assert (link.key, link.envelope.data.mirror_comments, link.envelope.data.thread) == (TICKET.id, True, room.where)
    pending: AddComment = only(emits, "add_comment")
    assert (pending.record, pending.body) == (TICKET, "Grace (slack): also on mobile")
    later: AddComment = only(room.say("fixed by restarting?", who="Ada"), "add_comment")
    assert later.body == "Ada (slack): fixed by restarting?" and later.command_id != pending.command_id
    assert room.state.transcript == []


def test_a_redelivered_reply_is_the_same_comment_an_edit_a_new_one_and_a_deletion_none() -> None:
    room = Room()
    room.opened(commands(room.react(), "create_ticket")[0])
    first = only(room.say("hello", message_id="200.1"), "add_comment")
    again = only(room.say("hello", message_id="200.1"), "add_comment")
    assert first.command_id == again.command_id
    edited = only(room.say("hello there", message_id="200.1", action="edited"), "add_comment")
    assert edited.command_id != first.command_id and edited.body == "Ada (slack): (edited) hello there"
    assert room.say("", message_id="200.1", action="deleted") == []


def test_threadlinks_own_messages_are_never_mirrored() -> None:
    room = Room()
    room.opened(commands(room.react(), "create_ticket")[0])
    assert room.say("Opened SUP-7", own=True) == []


def test_a_failed_open_says_so_and_a_new_trigger_tries_again_with_a_new_id() -> None:
    room = Room()
    create = commands(room.react(), "create_ticket")[0]
    emits = room.opened(create, status="failed", reason="project SUP does not exist")
    assert only(emits, "post_message").text == "Could not open a ticket: project SUP does not exist"
    retry = only(room.react(), "create_ticket")
    assert retry.command_id != create.envelope.data.command_id


def test_an_earlier_attempts_late_answer_is_ignored() -> None:
    room = Room()
    first = commands(room.react(), "create_ticket")[0]
    room.opened(first, status="failed", reason="timeout")
    room.react()
    assert room.opened(first) == []
    assert room.state.escalation is not None and room.state.escalation.status == "requested"


def test_replies_waiting_for_the_ticket_are_bounded() -> None:
    room = Room()
    room.react()
    for n in range(80):
        room.say(f"reply {n}")
    assert room.state.escalation is not None and len(room.state.escalation.pending) == 50


def test_the_transcript_is_bounded() -> None:
    room = Room(transcript_messages=3)
    for n in range(10):
        room.say(f"line {n}")
    assert [line.text for line in room.state.transcript] == ["line 7", "line 8", "line 9"]


# -- the ticket's comments come back (Follow, on the record side) ----------------------------


def escalated_card(desk: Desk, visibility: str = "internal") -> None:
    """The link request Escalate sends once the ticket is open, and the ticket's card posted."""
    from schemas.links import LinkRequest

    desk.record(ticket("SUP-7"))
    request = LinkRequest(
        thread=thread(),
        message_id="escalated:jira:SUP-7",
        record=RecordRef(system="jira", key="SUP-7"),
        channel_visibility=visibility,  # type: ignore[arg-type]
        mirror_comments=True,
    )
    emits = desk.request(envelope(request))
    desk.post_cards(emits)


def agent_comment(**values: Any) -> RecordComment:
    fields: dict[str, Any] = {
        "ref": RecordRef(system="jira", key="SUP-7"),
        "comment_id": "10001",
        "author": "Agent Smith",
        "body": "Please clear the cache",
        "version": 5,
    }
    return RecordComment.model_validate(fields | values)


def test_a_public_comment_on_the_ticket_is_said_in_the_thread_attributed_once() -> None:
    desk = Desk(settings=StreamSettings())
    escalated_card(desk)
    said: PostMessage = only(desk.comment(agent_comment()), "post_message")
    assert (said.destination, said.text) == (thread(), "Agent Smith on SUP-7: Please clear the cache")
    again = only(desk.comment(agent_comment()), "post_message")
    assert again.command_id == said.command_id


@pytest.mark.parametrize(
    "values",
    [{"public": False}, {"by_threadlink": True}, {"action": "deleted"}, {"visibility": "restricted"}],
    ids=["internal_note", "threadlinks_own", "deleted", "too_private_for_the_thread"],
)
def test_internal_notes_own_comments_and_too_private_ones_never_reach_the_thread(values: dict[str, Any]) -> None:
    desk = Desk()
    escalated_card(desk)
    assert commands(desk.comment(agent_comment(**values)), "post_message") == []


def test_a_thread_that_only_mentions_a_ticket_does_not_hear_its_comments() -> None:
    desk = Desk()
    desk.record(ticket("SUP-7"))
    desk.post_cards(desk.say("see SUP-7", where=thread()))
    emits = desk.comment(agent_comment())
    assert commands(emits, "post_message") == []
    assert commands(emits, "update_card")  # the card still shows the latest comment
