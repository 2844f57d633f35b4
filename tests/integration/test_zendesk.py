"""The Zendesk connector on the real broker, against FakeZendesk (sandbox/zendesk_api.py). Zendesk's
OpenAPI file is not kept here (../shared/specs/zendesk/README.md), so the fake checks every request
against Zendesk's documented formats (its docstring names the pages) and each test ends with its
`assert_no_violations()`.

- a signed webhook of a ticket update becomes a record on Kafka (once, also when redelivered); an
  internal note comes out as a comment that is not public; forged and stale deliveries are 401;
- the incremental export poller reads pages by Zendesk's cursor, checkpointed in Kafka with the
  events: restarted, it goes on from the checkpoint (no duplicate, nothing missed);
- a thread's ticket asked for twice, its first answer lost, is created once;
- a 429 with Retry-After holds only its ticket's commands, through the runtime's scheduler;
- a revoked token pauses the sink (nothing dead-lettered) until it works again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition
from pydantic import TypeAdapter

from connectors.runtime import health
from connectors.runtime.pollers import PollerGroup
from connectors.zendesk.source import ZendeskTicketExport
from sandbox.zendesk_api import FakeZendesk, zendesk_time
from schemas import events
from schemas.commands import AddComment, Command, CreateTicket, FetchRecord, command_id_for
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope
from schemas.outcomes import Outcome
from schemas.records import RecordComment, RecordEvent, RecordRef, TicketRecord
from schemas.social import ThreadRef
from tests.integration.connector_deployment import Deployment, as_fields, deploy

pytestmark = pytest.mark.integration

EMAIL = "threadlink@example.com"
TOKEN = "zendesk-integration-token-not-real"
SECRET = "zendesk-integration-signing-secret"
NAME = "zendesk"
THREAD = ThreadRef(platform="slack", workspace="T01", channel="C01", thread_id="1700000000.000100")


def committed(bootstrap: str, topic: str, model: Any) -> list[Envelope[Any]]:
    """Every envelope on `topic` a read-committed reader sees (the poller publishes in transactions)."""
    adapter = TypeAdapter(Envelope[model])
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        client_id="tests-zendesk",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[Envelope[Any]] = []
        for _ in range(200):  # bounded: 200 polls of at most 0.5s
            if all(consumer.position(tp) >= end[tp] for tp in tps):
                break
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(adapter.validate_json(r.value) for r in batch)
        return out
    finally:
        consumer.close()


async def until(predicate: Callable[[], Any], *, timeout_s: float = 60, what: str = "a condition") -> Any:
    """Until `predicate()` (run in a thread: it may read Kafka) is truthy, at most `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while True:
            value = await asyncio.to_thread(predicate)
            if value:
                return value
            await asyncio.sleep(0.2)


@dataclass
class Deployed(Deployment):
    fake: FakeZendesk

    def records(self) -> list[Envelope[Any]]:
        return committed(self.bootstrap, self.topics.records, RecordEvent)

    def comments(self) -> list[Envelope[Any]]:
        return committed(self.bootstrap, self.topics.record_comments, RecordComment)

    def outcomes(self) -> list[Envelope[Outcome]]:
        return committed(self.bootstrap, self.topics.outcomes, Outcome)

    def dead_letters(self) -> list[Envelope[DeadLetter]]:
        return committed(self.bootstrap, self.topics.dead_letters, DeadLetter)


@pytest.fixture
async def deployed(kafka_bootstrap: str, namespace: str, request: pytest.FixtureRequest) -> AsyncIterator[Deployed]:
    """FakeZendesk (no minute's delay on the export, two tickets a page), and the connector
    deployed against it (tests/integration/connector_deployment.py)."""
    fake = FakeZendesk(email=EMAIL, api_token=TOKEN, webhook_secret=SECRET, recent_exclusion_s=0, export_page_size=2)
    await fake.start()
    entry = {
        "type": "zendesk",
        "base_url": fake.url,
        "email": EMAIL,
        "api_token": TOKEN,
        "webhook_secret": SECRET,
        "poll_interval_s": 6,
        "max_pages_per_poll": 1,
        "start_time": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
    }
    try:
        async with deploy(
            NAME, entry, bootstrap=kafka_bootstrap, namespace=namespace, test_name=request.node.name
        ) as deployment:
            yield Deployed(**as_fields(deployment), fake=fake)
        fake.assert_no_violations()
    finally:
        await fake.stop()


async def send(deployed: Deployed, *commands: Command) -> None:
    for command in commands:
        key = command.thread.id if isinstance(command, CreateTicket) else command.record.id  # type: ignore[union-attr]
        envelope = Envelope.wrap(command, type=events.COMMAND.format(kind=command.kind), source_system="streams")
        await deployed.publisher.publish(deployed.topics.commands(NAME), key, envelope)


def done(deployed: Deployed, *command_ids: str) -> Callable[[], dict[str, Outcome] | None]:
    def check() -> dict[str, Outcome] | None:
        outcomes = {o.data.command_id: o.data for o in deployed.outcomes()}
        return outcomes if set(command_ids) <= set(outcomes) else None

    return check


# -- webhooks ----------------------------------------------------------------------------------


async def test_ticket_webhooks_become_records_and_an_internal_note_is_no_public_comment(deployed: Deployed) -> None:
    fake = deployed.fake
    fake.webhook_url = deployed.webhook_url
    ticket = await fake.put_ticket("Checkout is down", priority="high")
    await fake.put_ticket("Checkout is down", ticket_id=ticket["id"], status="pending")  # an update
    await fake.add_comment(ticket["id"], "We are on it", public=True)
    await fake.add_comment(ticket["id"], "Customer is on the legacy plan; do not offer a refund", public=False)
    assert [(d.type.rsplit(".", 1)[1], d.status) for d in fake.deliveries] == [
        ("created", 200),
        ("status_changed", 200),
        ("comment_added", 200),
        ("comment_added", 200),
    ]

    records = await until(lambda: (r := deployed.records()) and len(r) >= 4 and r, what="four ticket records")
    statuses = [(e.data.ref.id, e.data.status) for e in records]
    assert statuses[:2] == [(f"{NAME}:1", "open"), (f"{NAME}:1", "pending")]
    assert all(isinstance(e.data, TicketRecord) and e.id.startswith(f"{NAME}:") for e in records)

    comments = await until(lambda: (c := deployed.comments()) and len(c) >= 2 and c, what="two comments")
    public, internal = (e.data for e in comments)
    assert (public.body, public.public, public.visibility) == ("We are on it", True, "internal")
    assert (internal.public, internal.visibility) == (False, "restricted")
    assert comments[1].visibility == "restricted"
    assert not [e for e in comments if e.data.public and "legacy plan" in e.data.body]

    # Zendesk's retry of a delivery (the same event id, signed anew): 200, nothing new.
    note = fake.tickets[ticket["id"]].comments[-1]
    payload = fake.ticket_event("comment_added", ticket["id"], comment=note)
    first = await fake.deliver(payload)
    again = await fake.deliver(payload)
    assert (first.status, again.status) == (200, 200)
    settled = await until(lambda: (c := deployed.comments()) and len(c) >= 3 and c, what="the new delivery")
    assert len(settled) == 3 and len(deployed.records()) == 5


async def test_forged_stale_and_broken_webhooks_are_refused_and_publish_nothing(deployed: Deployed) -> None:
    fake = deployed.fake
    ticket = await fake.put_ticket("Checkout is down")
    payload = fake.ticket_event("status_changed", ticket["id"])
    forged_body, forged = fake.signed(payload, secret="not-the-secret")
    stale_body, stale = fake.signed(payload, timestamp=zendesk_time(datetime.now(UTC) - timedelta(minutes=10)))
    broken_body, broken = fake.signed({"type": "zen:event-type:ticket.status_changed", "id": "e-1", "detail": {}})
    async with httpx.AsyncClient(timeout=30) as client:
        answers = [
            (await client.post(deployed.webhook_url, content=body, headers=headers)).status_code
            for body, headers in ((forged_body, forged), (stale_body, stale), (broken_body, broken))
        ]
        good_body, good = fake.signed(payload)
        accepted = await client.post(deployed.webhook_url, content=good_body, headers=good)
    assert answers == [401, 401, 400]
    assert accepted.status_code == 200
    records = await until(deployed.records, what="the genuine delivery's record")
    assert [e.id for e in records] == [f"{NAME}:{payload['id']}"]
    assert deployed.dead_letters() == []


# -- the incremental export --------------------------------------------------------------------


async def run_export_until(deployed: Deployed, predicate: Callable[[], Any], *, timeout_s: float = 90) -> None:
    """A fresh poller (as after a restart: it knows only the checkpoint in Kafka) in a PollerGroup
    until `predicate()`; stopped after it."""
    poller = ZendeskTicketExport(deployed.config, deployed.ctx)
    group = PollerGroup(deployed.bootstrap, deployed.topics, [(NAME, poller)], client_id="tests-zendesk")
    await group.start()
    task = asyncio.create_task(group.run())
    try:
        await until(predicate, timeout_s=timeout_s, what="the export's tickets")
    finally:
        group.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)


async def test_the_export_reads_pages_by_cursor_and_resumes_after_a_restart_without_duplicates(
    deployed: Deployed,
) -> None:
    fake = deployed.fake
    for n in range(5):
        await fake.put_ticket(f"Ticket {n + 1}")
    exports = lambda: [r for r in fake.requests if r.path.endswith("/incremental/tickets/cursor.json")]  # noqa: E731

    def keys() -> list[tuple[str, str]]:
        return [(e.data.ref.key, e.id) for e in deployed.records()]

    await run_export_until(deployed, lambda: len(keys()) >= 5)
    first_run = len(exports())
    assert first_run >= 3  # five tickets, two a page, one page a poll
    assert exports()[0].query.keys() == {"start_time"}

    # Meanwhile: new tickets, an old one changed, one deleted. The restarted poller starts from
    # the checkpointed cursor, not from start_time again.
    for n in range(5, 8):
        await fake.put_ticket(f"Ticket {n + 1}")
    await fake.put_ticket("Ticket 1, reopened", ticket_id=1, status="open")
    fake.delete_ticket(2)
    await run_export_until(deployed, lambda: len(keys()) >= 10)

    assert all(r.query.keys() == {"cursor"} for r in exports()[first_run:])
    published = keys()
    assert len(published) == len({event_id for _, event_id in published}), "an event was published twice"
    assert sorted(key for key, _ in published) == ["1", "1", "2", "2", "3", "4", "5", "6", "7", "8"]
    by_key: dict[str, list[str]] = {}
    for envelope in deployed.records():  # a key's events are in order (one partition each)
        data = envelope.data
        by_key.setdefault(data.ref.key, []).append(data.title if data.kind == "ticket" else data.kind)
    assert by_key["1"] == ["Ticket 1", "Ticket 1, reopened"] and by_key["2"] == ["Ticket 2", "missing"]


async def test_the_export_answered_429_waits_its_retry_after_and_then_goes_on(deployed: Deployed) -> None:
    fake = deployed.fake
    await fake.put_ticket("Ticket 1")
    fake.fail_next(429, retry_after=1, path_prefix="/api/v2/incremental/")
    await run_export_until(deployed, lambda: len(deployed.records()) >= 1, timeout_s=45)
    limited, retried = [r for r in fake.requests if r.path.startswith("/api/v2/incremental/")][:2]
    assert (limited.status, retried.status) == (429, 200)
    assert retried.at - limited.at >= 1.0  # its Retry-After, not sooner (and not 2 x 6s: see the unit test)
    assert retried.query == limited.query  # from the same cursor


# -- the sink ----------------------------------------------------------------------------------


def create(salt: str) -> CreateTicket:
    return CreateTicket(
        command_id=command_id_for("create_ticket", THREAD.id, salt),
        target=NAME,
        thread=THREAD,
        project="billing",
        summary="Refund stuck",
        description="Ada (slack): the refund is stuck",
    )


async def test_a_threads_ticket_asked_for_twice_with_a_lost_answer_is_created_once(deployed: Deployed) -> None:
    fake = deployed.fake
    # Zendesk stores the ticket but the answer is lost (a 502 from a proxy): the sink retries.
    fake.fail_next(502, path_prefix="/api/v2/tickets.json", method="POST", after_store=True)
    first, second = create("ada"), create("grace")
    await send(deployed, first, first, second)  # the first delivered twice, and a second trigger

    async with deployed.sink_running():
        outcomes = await until(done(deployed, first.command_id, second.command_id), what="both outcomes")

    assert fake.created == [1]
    effects = {cid: o.effect for cid, o in outcomes.items()}
    assert effects[first.command_id] and effects[second.command_id]
    assert effects[first.command_id].created == effects[second.command_id].created == RecordRef(system=NAME, key="1")
    posts = [r for r in fake.requests if r.method == "POST"]
    assert len(posts) == 1 and posts[0].headers["Idempotency-Key"] == first.command_id
    assert fake.tickets[1].fields["external_id"].startswith("threadlink-")


async def test_a_429_with_retry_after_holds_only_its_ticket(deployed: Deployed) -> None:
    fake = deployed.fake
    for n in (1, 2):
        await fake.put_ticket(f"Ticket {n}")
    fake.fail_next(429, retry_after=2, path_prefix="/api/v2/tickets/1.json", method="PUT")
    comments = [
        AddComment(
            command_id=f"add_comment-{key}",
            target=NAME,
            record=RecordRef(system=NAME, key=key),
            thread=THREAD,
            body="Discussed in a Slack thread",
        )
        for key in ("1", "2")
    ]
    await send(deployed, *comments)

    async with deployed.sink_running():
        outcomes = await until(done(deployed, *(c.command_id for c in comments)), what="both comments")

    assert {o.status for o in outcomes.values()} == {"done"}
    puts = [r for r in fake.requests if r.method == "PUT"]
    limited = next(r for r in puts if r.status == 429)
    on_1 = [r for r in puts if r.path == "/api/v2/tickets/1.json" and r.status == 200]
    on_2 = [r for r in puts if r.path == "/api/v2/tickets/2.json" and r.status == 200]
    assert len(on_1) == len(on_2) == 1
    assert on_1[0].at - limited.at >= 2.0  # ticket 1 waited its Retry-After
    assert on_2[0].at < on_1[0].at  # while ticket 2 went on
    assert [c["public"] for c in fake.comments(1)] == [True, False]  # threadlink's comment: an internal note


async def test_a_revoked_token_pauses_the_sink_until_it_works_again(deployed: Deployed) -> None:
    fake = deployed.fake
    await fake.put_ticket("Checkout is down")
    fake.revoked = True
    fetch = FetchRecord(command_id="fetch_record-1", target=NAME, record=RecordRef(system=NAME, key="1"))
    await send(deployed, fetch)

    async with deployed.sink_running():
        problem = await until(lambda: health.report().get("problems"), what="the sink marked down")
        assert "zendesk GET ticket: HTTP 401" in str(problem) and f"connectors.{NAME}" in str(problem)
        assert TOKEN not in str(problem)
        refused = len(fake.requests)
        await until(lambda: len(fake.requests) > refused, what="a probe with the same command")
        assert deployed.outcomes() == [] and deployed.dead_letters() == []
        fake.revoked = False
        outcomes = await until(done(deployed, fetch.command_id), what="the command carried out")

    assert outcomes[fetch.command_id].status == "done"
    assert health.report() == {"status": "ok"}
    assert [e.data.kind for e in deployed.records()] == ["ticket"]
