"""The envelope on the wire (CloudEvents 1.0) and the exported schemas against real events."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, get_args

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from schemas import events
from schemas.checkpoints import Checkpoint
from schemas.commands import (
    AddComment,
    AddReaction,
    Command,
    CommandKind,
    CreateTicket,
    DeleteCard,
    DraftArticle,
    FetchRecord,
    JoinRoom,
    PostCard,
    PostMessage,
    UpdateCard,
    command_id_for,
)
from schemas.deadletters import DeadLetter
from schemas.envelope import CONTENT_TYPE, SCHEMA_VERSION, Envelope
from schemas.export import JSON_DIR, SCHEMAS_DIR, json_schemas, schema_file_name
from schemas.ledger import LedgerEntry
from schemas.links import Link, LinkRequest
from schemas.outcomes import Effect, Outcome
from schemas.records import (
    ArticleRecord,
    MachineStateRecord,
    ProductionOrderRecord,
    RecordComment,
    RecordEvent,
    RecordMissing,
    RecordRef,
    TicketRecord,
)
from schemas.social import (
    Author,
    ChannelRef,
    SocialEvent,
    SocialMessage,
    SocialReaction,
    ThreadLinked,
    ThreadRef,
    ThreadTimer,
    UserRef,
)
from schemas.subscriptions import Subscription
from schemas.trace import new_traceparent, trace_id

pytestmark = pytest.mark.unit

#: CloudEvents 1.0 context attributes (required and optional) and the `data` member.
CLOUDEVENTS_CORE = {"specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time"}
OUR_EXTENSIONS = {"receivedat", "sourcesystem", "schemaversion", "visibility", "traceparent"}
#: "CloudEvents attribute names MUST consist of lower-case letters ('a' to 'z') or digits ('0' to '9')
#: from the ASCII character set. Attribute names SHOULD be descriptive and terse and SHOULD NOT exceed
#: 20 characters in length."
ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")

AT = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
THREAD = ThreadRef(platform="slack", workspace="T0001", channel="C0001", thread_id="1741064767.000100")
RECORD = RecordRef(system="jira", key="PROJ-123")
TICKET = TicketRecord(
    ref=RECORD, title="Login fails", status="Open", assignee="ada", url="https://jira.example/PROJ-123", updated_at=AT
)


def command_examples() -> list[Any]:
    target = "slack"
    return [
        PostCard(
            command_id=command_id_for("post_card", "x"),
            target=target,
            reply_key=RECORD.id,
            destination=THREAD,
            record=TICKET,
            in_reply_to="1",
        ),
        UpdateCard(
            command_id=command_id_for("update_card", "x"),
            target=target,
            destination=THREAD,
            record=TICKET,
            card_message_id="1741064767.000300",
            not_before=AT,
            coalesce_key=f"card:{THREAD.id}|{RECORD.id}",
            coalesce_rank=TICKET.version,
        ),
        DeleteCard(
            command_id=command_id_for("delete_card", "x"),
            target=target,
            destination=THREAD,
            record=RECORD,
            card_message_id="1741064767.000300",
            reason="the message was deleted",
        ),
        AddReaction(
            command_id=command_id_for("add_reaction", "x"),
            target=target,
            destination=THREAD,
            message_id="1741064767.000200",
            reaction="eyes",
        ),
        PostMessage(
            command_id=command_id_for("post_message", "x"),
            target=target,
            destination=ChannelRef(platform="slack", workspace="T0001", channel="C0002"),
            text="PROJ-123: Status Open → Done",
            about=RECORD,
        ),
        PostMessage(
            command_id=command_id_for("post_message", "y"),
            target=target,
            destination=UserRef(platform="slack", workspace="T0001", user_id="U0001"),
            text="You follow PROJ-123",
        ),
        AddComment(
            command_id=command_id_for("add_comment", "x"),
            target="jira",
            record=RECORD,
            thread=THREAD,
            body="Seen in #ops",
        ),
        CreateTicket(
            command_id=command_id_for("create_ticket", "x"), target="jira", thread=THREAD, project="PROJ", summary="S"
        ),
        DraftArticle(
            command_id=command_id_for("draft_article", THREAD.id),
            target="wordpress",
            reply_key=THREAD.id,
            thread=THREAD,
            title="Checkout is down: restart the pod",
            body="Restart it.\n\nThen check the health page.",
            permalink="https://acme.slack.com/archives/C0001/p1741064767000100",
        ),
        JoinRoom(
            command_id=command_id_for("join_room", "$invite"),
            target="matrix",
            destination=ChannelRef(platform="matrix", workspace="example.org", channel="!room:example.org"),
            invite_id="$invite",
        ),
        FetchRecord(command_id=command_id_for("fetch_record", "x"), target="jira", record=RECORD),
    ]


def wrap(data_type: Any, data: Any, event_type: str) -> Envelope[Any]:
    return Envelope[data_type].wrap(
        data, type=event_type, source_system="slack", subject=THREAD.id, id="evt-1", occurred_at=AT
    )


def dead_letter(key: str | None) -> DeadLetter:
    return DeadLetter(
        topic="threadlink.social.events",
        partition=0,
        offset=42,
        key=key,
        value="{not json",
        error_kind="invalid",
        reason="Expecting property name",
        consumer="link",
        failed_at=AT,
    )


def example_events() -> list[Envelope[Any]]:
    """At least one real event per value model of the topic catalog (every union variant too)."""
    message = SocialMessage(
        thread=THREAD, message_id="1741064767.000200", author=Author(id="U0001", display_name="Ada"), text="PROJ-123?"
    )
    reaction = SocialReaction(thread=THREAD, message_id="1741064767.000200", reaction="eyes", author=Author(id="U0002"))
    article = ArticleRecord(
        ref=RecordRef(system="wordpress", key="42"), title="Paying by card", excerpt="How to pay", url="https://w/42"
    )
    order = ProductionOrderRecord(ref=RecordRef(system="mes", key="PO-7"), title="PO-7", status="delayed", line="L1")
    machine = MachineStateRecord(ref=RecordRef(system="mes", key="M-3"), title="Press 3", state="down")
    outcome = Outcome(
        command_id="post_card-1",
        command_kind="post_card",
        target="slack",
        status="done",
        effect=Effect(message_id="1741064767.000300"),
        destination=THREAD,
        record=RECORD,
        version=TICKET.version,
        completed_at=AT,
    )
    return [
        wrap(SocialEvent, message, events.SOCIAL_MESSAGE.format(action="posted")),
        wrap(SocialEvent, reaction, events.SOCIAL_REACTION.format(action="added")),
        wrap(SocialEvent, ThreadTimer(thread=THREAD, step=0, due_at=AT), events.SOCIAL_TIMER),
        wrap(
            SocialEvent,
            ThreadLinked(
                thread=THREAD, message_id="1741064767.000100", record=RECORD, record_kind="ticket", labels=["billing"]
            ),
            events.SOCIAL_LINKED,
        ),
        wrap(
            Subscription,
            Subscription(platform="slack", workspace="T1", user_id="U0001", about="project", value="PROJ"),
            events.SUBSCRIPTION.format(action="added"),
        ),
        wrap(RecordEvent, TICKET, events.RECORD_UPSERTED.format(kind="ticket")),
        wrap(RecordEvent, article, events.RECORD_UPSERTED.format(kind="article")),
        wrap(RecordEvent, order, events.RECORD_UPSERTED.format(kind="production_order")),
        wrap(RecordEvent, machine, events.RECORD_UPSERTED.format(kind="machine_state")),
        wrap(RecordEvent, RecordMissing(ref=RECORD, reason="not found"), events.RECORD_MISSING),
        wrap(
            RecordComment,
            RecordComment(ref=RECORD, comment_id="10001", body="Fixed.", created_at=AT),
            events.RECORD_COMMENT.format(action="added"),
        ),
        wrap(LinkRequest, LinkRequest(thread=THREAD, message_id="1", record=RECORD), events.LINK_REQUESTED),
        wrap(
            Link,
            Link(thread=THREAD, record=RECORD, status="posted", message_id="1", card_message_id="2", updated_at=AT),
            events.LINK_CHANGED.format(status="posted"),
        ),
        wrap(Outcome, outcome, events.OUTCOME.format(status="done")),
        wrap(
            Outcome,
            outcome.model_copy(update={"status": "failed", "effect": None, "error_kind": "skippable", "reason": "x"}),
            events.OUTCOME.format(status="failed"),
        ),
        wrap(DeadLetter, dead_letter(THREAD.id), events.DEAD_LETTER),
        wrap(
            LedgerEntry,
            LedgerEntry(command_id="post_card-1", target="slack", at=AT, effect=Effect(message_id="1")),
            events.LEDGER_DONE,
        ),
        *(wrap(Command, command, events.COMMAND.format(kind=command.kind)) for command in command_examples()),
        wrap(
            Checkpoint,
            Checkpoint(
                connector="jira", source="updated-issues", cursor={"updated": "2024-01-17T12:34:00Z"}, updated_at=AT
            ),
            events.CHECKPOINT,
        ),
    ]


def wire(event: BaseModel) -> dict[str, Any]:
    return json.loads(event.to_bytes())  # type: ignore[attr-defined]


# -- (c) the envelope on the wire -------------------------------------------------------------


def test_wire_names_are_cloudevents_attributes() -> None:
    event = example_events()[0]
    doc = wire(event)

    assert (
        set(doc)
        == {"specversion", "id", "source", "type", "time", "subject", "datacontenttype", "data"} | OUR_EXTENSIONS
    )
    assert doc["specversion"] == "1.0"
    assert doc["time"].startswith("2025-03-04T05:06:07")
    assert doc["schemaversion"] == SCHEMA_VERSION
    assert doc["type"] == "io.threadlink.social.message.posted"
    assert set(doc) - CLOUDEVENTS_CORE - {"data"} == OUR_EXTENSIONS
    assert all(ATTRIBUTE_NAME.match(name) for name in OUR_EXTENSIONS)


def test_every_envelope_field_has_a_cloudevents_wire_name() -> None:
    """A field added later without a lower-case alias (e.g. `source_system`) fails here."""
    for name, field in Envelope[SocialEvent].model_fields.items():
        wire_name = field.serialization_alias or field.alias or name
        if wire_name != "data":
            assert ATTRIBUTE_NAME.match(wire_name), f"{name} goes on the wire as {wire_name!r}"


@pytest.mark.parametrize("event", example_events(), ids=lambda event: event.type)
def test_envelope_round_trips(event: Envelope[Any]) -> None:
    assert type(event).model_validate_json(event.to_bytes()) == event


def test_dead_letter_of_a_keyless_message_round_trips() -> None:
    event = wrap(DeadLetter, dead_letter(None), events.DEAD_LETTER)

    validator("dead-letter.envelope.schema.json").validate(wire(event))
    assert Envelope[DeadLetter].model_validate_json(event.to_bytes()) == event


def test_envelope_accepts_python_names_too() -> None:
    event = example_events()[0]
    by_name = type(event).model_validate(event.model_dump(by_alias=False))

    assert by_name == event


def test_kafka_headers_carry_content_type_and_trace() -> None:
    parent = new_traceparent()
    event = Envelope[SocialEvent].wrap(
        example_events()[0].data, type="t", source_system="slack", parent_traceparent=parent
    )

    headers = dict(event.kafka_headers())

    assert headers["content-type"] == CONTENT_TYPE.encode()
    assert headers["traceparent"] == event.traceparent.encode()  # type: ignore[union-attr]
    assert trace_id(event.traceparent) == trace_id(parent)


def command_kinds() -> dict[str, type[BaseModel]]:
    union, _discriminator = get_args(Command)
    return {model.model_fields["kind"].default: model for model in get_args(union)}


def test_command_examples_cover_every_kind() -> None:
    assert {command.kind for command in command_examples()} == set(command_kinds())
    assert set(command_kinds()) == set(get_args(CommandKind))


@pytest.mark.parametrize("command", command_examples(), ids=lambda command: command.kind)
def test_command_envelope_dispatches_on_kind(command: Any) -> None:
    event = wrap(Command, command, events.COMMAND.format(kind=command.kind))

    parsed = Envelope[Command].model_validate_json(event.to_bytes())

    assert type(parsed.data) is command_kinds()[command.kind]
    assert parsed.data == command


def test_unknown_command_kind_is_rejected() -> None:
    doc = wire(wrap(Command, command_examples()[-1], "t"))
    doc["data"]["kind"] = "launch_rocket"

    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        Envelope[Command].model_validate(doc)


# -- (d) the exported schemas accept real events ----------------------------------------------


def checked_in_schema(file_name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS_DIR / JSON_DIR / file_name).read_text(encoding="utf-8"))


def validator(file_name: str) -> Draft202012Validator:
    return Draft202012Validator(checked_in_schema(file_name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_every_exported_schema_has_an_example() -> None:
    covered = {schema_file_name(type(event)) for event in example_events()}

    assert covered == set(json_schemas()), "add an example event for each new value model to example_events()"


@pytest.mark.parametrize("event", example_events(), ids=lambda event: event.type)
def test_exported_schema_validates_real_event(event: Envelope[Any]) -> None:
    file_name = schema_file_name(type(event))
    Draft202012Validator.check_schema(checked_in_schema(file_name))

    # What producers send (None left out) and the full dump (None as null) both validate.
    validator(file_name).validate(wire(event))
    validator(file_name).validate(event.model_dump(mode="json"))


def test_schema_rejects_what_the_model_rejects() -> None:
    doc = wire(wrap(RecordEvent, TICKET, events.RECORD_UPSERTED.format(kind="ticket")))
    del doc["data"]["kind"]  # pydantic needs the tag to pick the union member
    schema = validator("record-event.envelope.schema.json")

    with pytest.raises(ValidationError):
        Envelope[RecordEvent].model_validate(doc)
    assert not schema.is_valid(doc)
    assert not schema.is_valid({**wire(wrap(RecordEvent, TICKET, "t")), "time": 5})
