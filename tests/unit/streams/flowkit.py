"""Building events for the flows' unit tests, and reading what the flows emitted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import events
from schemas.commands import CommandBase
from schemas.envelope import Envelope
from schemas.links import LinkRequest
from schemas.outcomes import Effect, Outcome
from schemas.records import RecordComment, RecordMissing, RecordRef, TicketRecord
from schemas.social import Author, SocialMessage, ThreadRef
from schemas.topics import TopicNames
from streams.flows.emit import Emit
from streams.flows.link import LinkFlow
from streams.state import RecordState, ThreadState
from threadlink.config import StreamSettings

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NAMES = TopicNames("t")


def thread(channel: str = "C1", ts: str = "100.000001", platform: str = "slack") -> ThreadRef:
    return ThreadRef(platform=platform, workspace="T1", channel=channel, thread_id=ts)


def ticket(key: str = "PROJ-1", version: int = 1, **values: Any) -> TicketRecord:
    fields: dict[str, Any] = {
        "ref": RecordRef(system="jira", key=key),
        "title": f"Title of {key}",
        "status": "Open",
        "url": f"https://jira.example/browse/{key}",
        "version": version,
    }
    return TicketRecord.model_validate(fields | values)


def envelope(data: Any, *, at: datetime = T0, type: str = "io.threadlink.test") -> Envelope[Any]:
    return Envelope.wrap(data, type=type, source_system="test", occurred_at=at).model_copy(update={"received_at": at})


@dataclass
class Desk:
    """One LinkFlow with the state of every key it was given, like the tables keep it."""

    settings: StreamSettings = field(default_factory=StreamSettings)
    records: dict[str, RecordState] = field(default_factory=dict)
    threads: dict[str, ThreadState] = field(default_factory=dict)
    clock: datetime = T0

    def __post_init__(self) -> None:
        self.flow = LinkFlow(NAMES, self.settings)

    def tick(self, seconds: float = 1) -> datetime:
        self.clock += timedelta(seconds=seconds)
        return self.clock

    def record_state(self, record_id: str = "jira:PROJ-1") -> RecordState:
        return self.records.setdefault(record_id, RecordState())

    # -- driving the flow, one event at a time, like the agents do ----------------------------

    def say(
        self,
        text: str,
        *,
        where: ThreadRef | None = None,
        message_id: str = "100.000001",
        action: str = "posted",
        visibility: str = "internal",
        own: bool = False,
        previous_text: str | None = None,
    ) -> list[Emit]:
        where = where or thread()
        message = SocialMessage(
            thread=where,
            message_id=message_id,
            action=action,  # type: ignore[arg-type]
            author=Author(id="U1", is_threadlink=own),
            text=text,
            previous_text=previous_text,
            permalink=f"https://acme.slack.com/archives/{where.channel}/p{message_id.replace('.', '')}",
            channel_visibility=visibility,  # type: ignore[arg-type]
        )
        state = self.threads.setdefault(where.id, ThreadState())
        emits = self.flow.on_social(state, envelope(message, at=self.tick()))
        # Link requests travel on to the record side, as they would through Kafka.
        out: list[Emit] = []
        for emit in emits:
            out.append(emit)
            if emit.topic == NAMES.link_requests:
                out += self.request(emit.envelope)
        return out

    def request(self, request_envelope: Envelope[LinkRequest]) -> list[Emit]:
        request = request_envelope.data
        return self.flow.on_link_request(self.record_state(request.record.id), request_envelope)

    def record(self, record: TicketRecord | RecordMissing) -> list[Emit]:
        return self.flow.on_record(
            self.record_state(record.ref.id),
            envelope(record, at=self.tick(), type=events.RECORD_UPSERTED.format(kind=record.kind)),
        )

    def comment(self, comment: RecordComment) -> list[Emit]:
        return self.flow.follow.on_comment(self.record_state(comment.ref.id), envelope(comment, at=self.tick()))

    def outcome(self, emit: Emit, status: str = "done", **values: Any) -> list[Emit]:
        """The sink's answer to one command the flow emitted."""
        command = emit.envelope.data
        about = getattr(command, "record", None)
        ref = about if isinstance(about, RecordRef) else about.ref
        outcome = Outcome(
            command_id=command.command_id,
            command_kind=command.kind,
            target=command.target,
            status=status,  # type: ignore[arg-type]
            effect=values.pop(
                "effect", Effect(message_id=f"card-{command.command_id[-6:]}") if status == "done" else None
            ),
            destination=getattr(command, "destination", None),
            record=ref,
            version=getattr(about, "version", None),
            completed_at=self.tick(),
            **values,
        )
        return self.flow.on_outcome(self.record_state(ref.id), envelope(outcome, at=self.clock))

    def post_cards(self, emits: list[Emit]) -> list[Emit]:
        """Every PostCard among `emits` done by the sink; returns what the outcomes caused."""
        out: list[Emit] = []
        for emit in commands(emits, "post_card"):
            out += self.outcome(emit)
        return out


def commands(emits: list[Emit], kind: str | None = None) -> list[Emit]:
    return [
        e for e in emits if isinstance(e.envelope.data, CommandBase) and (kind is None or e.envelope.data.kind == kind)
    ]


def kinds(emits: list[Emit]) -> list[str]:
    return [e.envelope.data.kind if isinstance(e.envelope.data, CommandBase) else e.topic for e in emits]
