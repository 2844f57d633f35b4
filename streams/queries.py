"""Queries over the links, served as JSON by every streams worker (and by `threadlink links`):

- `GET /links/threads?record=<record id>`: the threads that discuss a record (its cards, and the
  mentions still waiting for the record's fetch), most recently mentioned first;
- `GET /links/records?thread=<thread id>`: the records a thread touches (named in its messages,
  its ticket, the articles suggested there).

A key's state lives on the worker that owns its partition; a worker asked for a key it does not
own forwards the request to the one that does, so any worker answers for every key. `audience=public|internal` keeps
out threads whose place is narrower than that audience (a private channel's thread is not named
to a public one); without it, the answer is for operators and names every thread.

The answers come from the flows' bounded state (streams/state.py): a record lists its last
`MAX_CARDS` threads, a thread the records of its last `MAX_MESSAGES` messages that named any.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, get_args

import faust
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from kafka.partitioner.default import murmur2
from pydantic import BaseModel
from yarl import URL

from schemas.topics import STREAM_PARTITIONS
from schemas.visibility import Visibility, may_show
from streams.state import RecordState, ThreadState
from streams.tables import StateTable

if TYPE_CHECKING:
    from streams.app import StreamsContext

AUDIENCES = get_args(Visibility)
S = TypeVar("S", bound=BaseModel)


def threads_of(record_id: str, state: RecordState, audience: Visibility) -> dict[str, Any]:
    threads: list[dict[str, Any]] = [
        {
            "thread": card.thread.id,
            "platform": card.thread.platform,
            "channel": card.thread.channel,
            "status": card.status,
            "permalink": card.permalink,
            "card_message_id": card.card_message_id,
            "mentioned_by": card.mentioned_by,
            "mentioned_at": card.mentioned_at,
            "place_visibility": card.place_visibility,
        }
        for card in state.cards.values()
        if may_show(card.place_visibility, audience)
    ]
    carded = {entry["thread"] for entry in threads}
    for waiting in state.waiting:
        if waiting.thread.id not in carded and may_show(waiting.place_visibility, audience):
            carded.add(waiting.thread.id)
            threads.append(
                {
                    "thread": waiting.thread.id,
                    "platform": waiting.thread.platform,
                    "channel": waiting.thread.channel,
                    "status": "waiting",
                    "permalink": waiting.permalink,
                    "card_message_id": None,
                    "mentioned_by": [waiting.message_id],
                    "mentioned_at": waiting.mentioned_at,
                    "place_visibility": waiting.place_visibility,
                }
            )
    threads.sort(key=lambda entry: entry["mentioned_at"], reverse=True)
    record = state.record
    return {
        "record": record_id,
        "title": record.title if record is not None else None,
        "url": record.url if record is not None else None,
        "missing": state.missing,
        "threads": threads,
    }


def records_of(thread_id: str, state: ThreadState) -> dict[str, Any]:
    roles: dict[str, dict[str, Any]] = {}

    def touch(record_id: str, role: str, message_id: str | None = None) -> None:
        entry = roles.setdefault(record_id, {"record": record_id, "roles": [], "named_by": []})
        if role not in entry["roles"]:
            entry["roles"].append(role)
        if message_id is not None:
            entry["named_by"].append(message_id)

    for message_id, record_ids in state.named.items():
        for record_id in record_ids:
            touch(record_id, "mentioned", message_id)
    escalation = state.escalation
    if escalation is not None and escalation.ticket is not None:
        touch(escalation.ticket.id, "ticket")
    for record_id in state.suggested:
        touch(record_id, "suggested")
    return {
        "thread": thread_id,
        "escalation": None
        if escalation is None
        else {
            "status": escalation.status,
            "ticket": escalation.ticket.id if escalation.ticket else None,
            "url": escalation.url,
            "reason": escalation.reason,
        },
        "records": list(roles.values()),
    }


Handler = Callable[[View, Request], Awaitable[Response]]


def problem(view: View, status: int, message: str) -> Response:
    return view.json({"error": message}, status=status)


def partition_of(key: str) -> int:
    """The partition of a key on the topics the flows read, as the producers' default partitioner
    (murmur2) placed it: the flows keep a key's state on the partition of its events."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % STREAM_PARTITIONS


class KeyedReader(Generic[S]):
    """Reads one key of a table on the worker that owns it, forwarding the request otherwise.

    Not Faust's `table_route`: it hashes the table's serialized key (JSON, quoted), not the key
    as the producers hashed it, so it sends about half the requests to a worker that does not
    own the key; and a view without a current event reads the first of the worker's local
    databases that holds the key, a stale standby copy included. Both are avoided by finding
    the partition the way the producers do and reading only that partition's database."""

    def __init__(self, app: faust.App, table: StateTable[S]) -> None:
        self.app, self.table = app, table

    def owner(self, partition: int) -> str | None:
        changelog = self.table.table.changelog_topic.get_topic_name()
        for url, topics in self.app.router.table_metadata(self.table.table.name).items():
            if partition in topics.get(changelog, []):
                return url
        return None

    async def answer(self, view: View, request: Request, key: str, respond: Callable[[Any], Response]) -> Response:
        partition = partition_of(key)
        owner = self.owner(partition)
        if owner is None:
            return problem(view, 503, "the workers are rebalancing; ask again in a moment")
        try:
            return await self.app.router._route_req(URL(owner), view.web, request)  # type: ignore[attr-defined]
        except SameNode:
            return respond(self.read(partition, key))

    def read(self, partition: int, key: str) -> Any | None:
        store = self.table.table.data
        db = store._dbs.get(partition)  # type: ignore[attr-defined]
        if db is None:
            return None
        raw = db.get(store._encode_key(key))  # type: ignore[attr-defined]
        return None if raw is None else self.table.adapter.validate_python(store._decode_value(raw))  # type: ignore[attr-defined]


def register(ctx: StreamsContext) -> None:
    app, tables = ctx.app, ctx.tables
    records = KeyedReader(app, tables.records)
    threads = KeyedReader(app, tables.threads)

    @app.page("/links/threads")
    async def threads_of_record(view: View, request: Request) -> Response:
        record_id = request.query.get("record", "")
        audience = request.query.get("audience", "restricted")
        if not record_id:
            return problem(view, 400, "say which record: ?record=<system:key>")
        if audience not in AUDIENCES:
            return problem(view, 400, f"audience must be one of {', '.join(AUDIENCES)}, not {audience!r}")

        def respond(state: RecordState | None) -> Response:
            if state is None:
                return problem(view, 404, f"threadlink has seen no mention of record {record_id!r}")
            return view.json(threads_of(record_id, state, audience))  # type: ignore[arg-type]

        return await records.answer(view, request, record_id, respond)

    @app.page("/links/records")
    async def records_of_thread(view: View, request: Request) -> Response:
        thread_id = request.query.get("thread", "")
        if not thread_id:
            return problem(view, 400, "say which thread: ?thread=<platform:workspace:channel:thread>")

        def respond(state: ThreadState | None) -> Response:
            if state is None:
                return problem(view, 404, f"threadlink knows nothing of thread {thread_id!r}")
            return view.json(records_of(thread_id, state))

        return await threads.answer(view, request, thread_id, respond)
