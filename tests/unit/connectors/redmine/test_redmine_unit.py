"""The Redmine connector against FakeRedmine (sandbox/redmine_api.py): mapping (private notes,
private issues), the client's error classification, the poller's cursor and paging. What a real
Redmine does is tested in tests/integration/test_redmine.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from connectors.base import ConnectorContext
from connectors.errors import AuthError, BackpressureError, FatalError, NotFoundError, RetriableError, SkippableError
from connectors.redmine.client import RedmineClient
from connectors.redmine.config import RedmineConfig
from connectors.redmine.mapping import comments_from_journals, thread_marker, ticket_from_issue, ticket_subject
from connectors.redmine.sink import RedmineSink
from connectors.redmine.source import RedmineIssuesPoller, read_cursor
from sandbox.redmine_api import FakeRedmine
from schemas.commands import AddComment, CreateTicket
from schemas.envelope import Envelope
from schemas.records import RecordRef
from schemas.social import ThreadRef
from schemas.topics import TopicNames
from streams.mentions import MentionExtractor
from tests.unit.connectors.recording import RecordingPublisher

pytestmark = pytest.mark.unit

KEY = "redmine-unit-key-not-real"
THREAD = ThreadRef(platform="slack", workspace="T1", channel="C1", thread_id="1700000000.000100")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeRedmine]:
    redmine = FakeRedmine(api_key=KEY, clock=clock)
    await redmine.start()
    redmine.put_project("ops")
    yield redmine
    redmine.assert_no_violations()
    await redmine.stop()


def settings(fake: FakeRedmine, **extra: Any) -> RedmineConfig:
    return RedmineConfig.model_validate({"base_url": fake.url, "api_key": KEY, "projects": ["ops"], **extra})


def context() -> ConnectorContext:
    return ConnectorContext(name="rm", topics=TopicNames(namespace="unit"), publisher=RecordingPublisher())


# -- mapping ------------------------------------------------------------------------------------


def test_an_issue_maps_to_a_ticket_keyed_by_its_number_with_its_project_visibility() -> None:
    config = RedmineConfig(base_url="https://rm.example.com/", api_key="k", project_visibility={"web": "public"})
    issue = {
        "id": 42,
        "project": {"id": 3, "name": "Web"},
        "tracker": {"id": 1, "name": "Bug"},
        "status": {"id": 2, "name": "In Progress"},
        "priority": {"id": 4, "name": "Urgent"},
        "assigned_to": {"id": 5, "name": "Ada Lovelace"},
        "subject": "Checkout is down",
        "updated_on": "2026-01-05T09:00:00Z",
    }
    record = ticket_from_issue(issue, system="redmine", config=config, project="web")
    assert record.ref.id == "redmine:42"
    assert record.url == "https://rm.example.com/issues/42"
    assert (record.status, record.assignee, record.priority, record.labels) == (
        "In Progress",
        "Ada Lovelace",
        "Urgent",
        ["Bug"],
    )
    assert record.visibility == "public"
    assert record.version == int(datetime(2026, 1, 5, 9, tzinfo=UTC).timestamp() * 1000)
    private = ticket_from_issue({**issue, "is_private": True}, system="redmine", config=config, project="web")
    assert private.visibility == "restricted"


def test_an_issue_without_a_numeric_id_is_skippable() -> None:
    config = RedmineConfig(base_url="https://rm.example.com", api_key="k")
    for issue in ({}, {"id": "42"}, {"id": True}, []):
        with pytest.raises(SkippableError):
            ticket_from_issue(issue, system="redmine", config=config)


def test_private_notes_are_never_public_and_field_changes_are_not_comments() -> None:
    config = RedmineConfig(
        base_url="https://rm.example.com",
        api_key="k",
        project_visibility={"web": "public"},
        private_notes_visibility="public",  # even so: a private note is not public
    )
    issue = {
        "id": 7,
        "journals": [
            {"id": 1, "user": {"id": 9, "name": "Ada"}, "notes": "On it", "created_on": "2026-01-05T09:00:00Z"},
            {
                "id": 2,
                "user": {"id": 1},
                "notes": "DB password is x",
                "private_notes": True,
                "created_on": "2026-01-05T09:00:01Z",
            },
            {
                "id": 3,
                "user": {"id": 9},
                "notes": "",
                "details": [{"name": "status_id"}],
                "created_on": "2026-01-05T09:00:02Z",
            },
            {"id": 4, "user": {"id": 9}, "notes": "old", "created_on": "2026-01-01T00:00:00Z"},
        ],
    }
    found = list(
        comments_from_journals(
            issue,
            system="redmine",
            config=config,
            project="web",
            own_user_id=1,
            since=datetime(2026, 1, 5, tzinfo=UTC),
        )
    )
    assert [c.comment_id for c in found] == ["1", "2"]
    public, private = found
    assert (public.public, public.visibility, public.by_threadlink) == (True, "public", False)
    assert (private.public, private.by_threadlink) == (False, True)


def test_the_thread_marker_ends_the_subject_and_is_stable() -> None:
    subject = ticket_subject("  Checkout\n is   down ", THREAD)
    assert subject == f"Checkout is down [{thread_marker(THREAD)}]"
    assert thread_marker(THREAD) == thread_marker(THREAD.model_copy())
    assert ticket_subject("", THREAD).startswith("Thread from slack [tl-")


# -- client errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (422, SkippableError),
        (429, BackpressureError),
        (500, RetriableError),
        (503, RetriableError),
    ],
)
async def test_http_status_becomes_the_right_error_without_the_key(status: int, expected: type[Exception]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Redmine-API-Key"] == KEY
        return httpx.Response(status, json={"errors": ["Subject cannot be blank"]}, headers={"Retry-After": "3"})

    config = RedmineConfig(base_url="https://rm.example.com", api_key=KEY)
    client = RedmineClient(config, transport=httpx.MockTransport(answer))
    try:
        with pytest.raises(expected) as caught:
            await client.get_issue("42")
        assert KEY not in str(caught.value)
        if status == 429:
            assert caught.value.retry_after == 3  # type: ignore[attr-defined]
        if status == 422:
            assert "Subject cannot be blank" in str(caught.value)
    finally:
        await client.aclose()


async def test_a_key_that_is_not_an_issue_number_never_reaches_the_url(fake: FakeRedmine) -> None:
    client = RedmineClient(settings(fake))
    try:
        for key in ("../users/1", "0", "42.json", "OPS-1"):
            with pytest.raises(NotFoundError):
                await client.get_issue(key)
    finally:
        await client.aclose()
    assert fake.requests == []


async def test_a_wrong_key_is_fatal(fake: FakeRedmine) -> None:
    client = RedmineClient(settings(fake, api_key="wrong"))
    try:
        with pytest.raises(AuthError):
            await client.current_user()
    finally:
        await client.aclose()


# -- the poller's cursor and paging -----------------------------------------------------------------


async def test_the_first_poll_without_a_checkpoint_starts_now_and_publishes_nothing(
    fake: FakeRedmine, clock: Clock
) -> None:
    fake.put_issue("ops", "Old news")
    poller = RedmineIssuesPoller(settings(fake), context(), project="ops")
    try:
        result = await poller.poll(poller.initial_cursor)
    finally:
        await poller.stop()
    assert result.events == [] and read_cursor(result.cursor)[0] is not None


async def drain(poller: RedmineIssuesPoller, cursor: Any, *, polls: int, per_poll: int) -> tuple[list[Any], Any]:
    """Polls as the runtime does while a result says `more` (at most `polls` times); returns the
    upserted envelopes and the last cursor. Fails when a poll publishes more than `per_poll`."""
    published: list[Any] = []
    for _ in range(polls):
        result = await poller.poll(cursor)
        upserted = [e for _, _, e in result.events if e.type.endswith("upserted")]
        assert len(upserted) <= per_poll
        published += upserted
        cursor = result.cursor
        if not result.more:
            return published, cursor
    raise AssertionError(f"still more after {polls} polls: the poller stalled")


async def test_polls_page_through_a_backlog_in_bounded_polls_then_publish_nothing_new(
    fake: FakeRedmine, clock: Clock
) -> None:
    since = clock.now
    for n in range(7):
        fake.put_issue("ops", f"Issue {n}")
        if n % 2:
            clock.tick()  # pairs share a second: the cursor's `seen` keeps them apart
    poller = RedmineIssuesPoller(
        settings(fake, since=since, page_size=2, max_pages_per_poll=2), context(), project="ops"
    )
    try:
        published, cursor = await drain(poller, poller.initial_cursor, polls=10, per_poll=4)
        assert sorted(e.id for e in published) == sorted(
            f"rm:issue:{n}:{fake.issues[n]['updated_on']}" for n in range(1, 8)
        )
        again = await poller.poll(cursor)
        assert again.events == [] and again.cursor == cursor

        clock.tick()
        fake.add_journal(3, "Customer says it works again")
        changed = await poller.poll(cursor)
    finally:
        await poller.stop()
    topics = TopicNames(namespace="unit")
    assert [(topic, e.subject) for topic, _, e in changed.events] == [
        (topics.records, "rm:3"),
        (topics.record_comments, "rm:3"),
    ]
    comment = changed.events[1][2]
    assert comment.id.startswith("rm:journal:") and comment.data.body == "Customer says it works again"


# -- the sink ---------------------------------------------------------------------------------------


async def test_create_ticket_finds_the_ticket_a_lost_answer_made(fake: FakeRedmine) -> None:
    sink = RedmineSink(settings(fake), context())
    command = CreateTicket(command_id="c1", target="rm", thread=THREAD, project="ops", summary="Checkout is down")
    envelope = Envelope.wrap(command, type="io.threadlink.command.create_ticket", source_system="streams")
    try:
        first = await sink.execute(command, envelope)
        second = await sink.execute(command, envelope)
        with pytest.raises(SkippableError, match="no project 'nope'"):
            await sink.execute(command.model_copy(update={"project": "nope", "command_id": "c3"}), envelope)
    finally:
        await sink.stop()
    assert first.created == second.created == RecordRef(system="rm", key="1")
    assert (first.recovered, second.recovered) == (False, True)
    assert len(fake.issues) == 1


async def test_a_note_whose_answer_was_lost_is_not_added_twice(fake: FakeRedmine) -> None:
    issue = fake.put_issue("ops", "Checkout is down")
    sink = RedmineSink(settings(fake), context())
    command = AddComment(
        command_id="n1",
        target="rm",
        record=RecordRef(system="rm", key=str(issue["id"])),
        thread=THREAD,
        body="Discussed in a Slack thread",
        permalink="https://acme.slack.com/archives/C1/p1",
    )
    envelope = Envelope.wrap(command, type="io.threadlink.command.add_comment", source_system="streams")
    try:
        await sink.execute(command, envelope)  # stored, but suppose the runtime never recorded it as done
        sink.outcome_unknown("n1")
        again = await sink.execute(command, envelope)
    finally:
        await sink.stop()
    assert again.recovered
    assert [j["notes"] for j in fake.journals[issue["id"]]] == [
        "Discussed in a Slack thread https://acme.slack.com/archives/C1/p1"
    ]


# -- the documented configuration ----------------------------------------------------------------


def test_the_documented_config_and_mention_patterns_work_together_with_jiras() -> None:
    doc = (Path(__file__).parents[4] / "docs" / "connectors" / "redmine.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", doc, re.DOTALL)
    assert block is not None
    example = yaml.safe_load(block.group(1))
    config = RedmineConfig.model_validate({**example["connectors"]["redmine"], "api_key": "k"})
    assert config.projects == ["ops", "web"] and config.visibility_of("web") == "public"
    patterns = [(p["system"], p["regex"]) for p in example["streams"]["mention_patterns"]]
    found = MentionExtractor(patterns).extract(
        "OPS-7 is like Redmine #42 and redmine#43, see https://redmine.acme.com/issues/44; not #45 or RM-x"
    )
    assert [ref.id for ref in found] == ["jira:OPS-7", "redmine:42", "redmine:43", "redmine:44"]


async def test_a_poller_of_a_project_that_does_not_exist_says_which_and_how_to_fix_it(fake: FakeRedmine) -> None:
    poller = RedmineIssuesPoller(settings(fake, since=datetime(2026, 1, 1, tzinfo=UTC)), context(), project="nope")
    try:
        with pytest.raises(FatalError, match=r"no project 'nope'.*check `projects`"):
            await poller.poll(poller.initial_cursor)
    finally:
        await poller.stop()


async def test_more_issues_in_one_second_than_a_poll_reads_are_all_published_once(
    fake: FakeRedmine, clock: Clock
) -> None:
    since = clock.now
    for n in range(7):
        fake.put_issue("ops", f"Bulk edit {n}")  # one second, as a bulk edit does
    poller = RedmineIssuesPoller(
        settings(fake, since=since, page_size=2, max_pages_per_poll=1), context(), project="ops"
    )
    try:
        published, cursor = await drain(poller, poller.initial_cursor, polls=6, per_poll=2)
        again = await poller.poll(cursor)
    finally:
        await poller.stop()
    assert sorted(e.subject for e in published) == sorted(f"rm:{n}" for n in range(1, 8))
    assert again.events == []
