"""The Faust agents: one per input topic, each a FlowRunner around a flow's pure decision, with
the state of the event's key read before and written after (only when it changed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from faust.types import TableT
from pydantic import BaseModel, TypeAdapter

from schemas.envelope import Envelope
from schemas.links import LinkRequest
from schemas.outcomes import Outcome
from schemas.records import RecordComment, RecordEvent
from schemas.social import SocialEvent
from streams.flows.emit import Emit
from streams.flows.escalate import Escalate
from streams.flows.know import Know
from streams.flows.link import LinkFlow
from streams.flows.reach import ReachFlow
from streams.flows.runner import FlowRunner, Handler
from streams.state import ThreadState
from streams.tables import StateTable

if TYPE_CHECKING:
    from streams.app import StreamsContext

S = TypeVar("S", bound=BaseModel)

SOCIAL = TypeAdapter(Envelope[SocialEvent])
REQUEST = TypeAdapter(Envelope[LinkRequest])
RECORD = TypeAdapter(Envelope[RecordEvent])
COMMENT = TypeAdapter(Envelope[RecordComment])
OUTCOME = TypeAdapter(Envelope[Outcome])


def stateful(table: StateTable[S], decide: Callable[[S, Any], Sequence[Emit]]) -> Handler:
    """A handler that loads the state of the event's key, decides, and stores the state back.
    By the Kafka key, always: a Faust table keeps a key's state on the partition of the event
    that writes it, so that is the only key whose state is found there again."""

    def handle(envelope: Envelope[Any], key: str) -> Sequence[Emit]:
        state, stored = table.get(key)
        emits = decide(state, envelope)
        table.put(key, state, stored)
        return emits

    return handle


def watch_entry(state: ThreadState) -> dict[str, Any] | None:
    """What the Reach timer needs of a thread with a step due; None when nothing is due."""
    reach = state.reach
    if reach is None or reach.due_at is None or reach.thread is None:
        return None
    return {
        "due_at": reach.due_at,
        "step": reach.steps_done,
        "thread": reach.thread.model_dump(mode="json"),
        "visibility": reach.place_visibility,
    }


def watched(
    table: StateTable[ThreadState], watch: TableT, decide: Callable[[ThreadState, Any], Sequence[Emit]]
) -> Handler:
    """`stateful` for the threads, keeping the Reach watch (a table beside theirs, on the same
    partition) in step with each thread's state."""

    def handle(envelope: Envelope[Any], key: str) -> Sequence[Emit]:
        state, stored = table.get(key)
        emits = decide(state, envelope)
        table.put(key, state, stored)
        entry = watch_entry(state)
        if entry is not None:
            if watch.get(key) != entry:
                watch[key] = entry
        elif stored is not None and key in watch:
            del watch[key]
        return emits

    return handle


def both(*decisions: Callable[[S, Any], Sequence[Emit]]) -> Callable[[S, Any], Sequence[Emit]]:
    """Several flows deciding on one event with one state (in order; their emits together)."""

    def decide(state: S, envelope: Envelope[Any]) -> Sequence[Emit]:
        return [emit for decision in decisions for emit in decision(state, envelope)]

    return decide


#: Outcomes of commands whose reply_key is a thread, not a record.
THREAD_KEYED_OUTCOMES = frozenset({"create_ticket", "draft_article"})


def by_kind(thread_keyed: Handler, record_keyed: Handler) -> Handler:
    """Outcomes come keyed by the state they update: a created ticket's or a thread's draft
    article's by its thread (Escalate, which ignores drafts), the rest by their record (Link, Follow)."""

    def handle(envelope: Envelope[Any], key: str) -> Sequence[Emit]:
        chosen = thread_keyed if envelope.data.command_kind in THREAD_KEYED_OUTCOMES else record_keyed
        return chosen(envelope, key)

    return handle


def register(ctx: StreamsContext) -> LinkFlow:
    app, topics, tables = ctx.app, ctx.topics, ctx.tables
    flow = LinkFlow(topics.names, ctx.settings.streams)
    escalate = Escalate(flow.emitter, ctx.settings.streams.escalate)
    know = Know(flow.emitter, ctx.settings.streams.know, ctx.articles)
    reach = ReachFlow(flow.emitter, ctx.settings.streams.reach, escalate, ctx.subscriptions)
    dead_letters = topics.names.dead_letters

    def runner(agent: str, adapter: TypeAdapter[Any], handler: Handler) -> FlowRunner[Any]:
        return FlowRunner(agent, adapter, handler, app.producer, dead_letters)

    social = runner(
        "link.on_social",
        SOCIAL,
        watched(
            tables.threads, tables.watch, both(flow.on_social, escalate.on_social, know.on_social, reach.on_social)
        ),
    )
    requests = runner("link.on_link_request", REQUEST, stateful(tables.records, flow.on_link_request))
    records = runner("link.on_record", RECORD, stateful(tables.records, flow.on_record))
    comments = runner("follow.on_comment", COMMENT, stateful(tables.records, flow.follow.on_comment))
    outcomes = runner(
        "link.on_outcome",
        OUTCOME,
        by_kind(stateful(tables.threads, escalate.on_outcome), stateful(tables.records, flow.on_outcome)),
    )

    for topic, flow_runner in (
        (topics.social_events, social),
        (topics.link_requests, requests),
        (topics.records, records),
        (topics.record_comments, comments),
        (topics.outcomes, outcomes),
    ):
        app.agent(topic, name=flow_runner.agent)(flow_runner.run)
    return flow
