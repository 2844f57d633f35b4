"""The Redmine connector against a real Redmine 5 (tests/integration/redmine_server.py) and the
real broker: polling with checkpoints in Kafka, journals as comments, and the sink's calls."""

from __future__ import annotations

import secrets
import urllib.error
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import ConnectorContext
from connectors.errors import AuthError, SkippableError
from connectors.redmine.config import RedmineConfig
from connectors.redmine.connector import build
from connectors.redmine.source import RedmineIssuesPoller
from schemas.commands import AddComment, CreateTicket, FetchRecord
from schemas.envelope import Envelope
from schemas.records import RecordComment, RecordEvent, RecordRef
from schemas.social import ThreadRef
from schemas.topics import TopicNames
from tests.unit.connectors.recording import RecordingPublisher
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics

from .kafka_helpers import envelopes, poll_for_a_while
from .redmine_server import Redmine

pytestmark = pytest.mark.integration

NAME = "redmine"
THREAD = ThreadRef(platform="slack", workspace="T1", channel="C1", thread_id="1700000000.000100")


@pytest.fixture
def topics(kafka_bootstrap: str, namespace: str, request: pytest.FixtureRequest) -> TopicNames:
    settings = Settings(
        kafka={
            "bootstrap_servers": kafka_bootstrap,
            "namespace": f"{namespace}-rm-{request.node.name[-12:].lower().replace('_', '-')}",
        }
    )
    apply_topics(settings)
    return settings.kafka.topics


@pytest.fixture
def project(redmine: Redmine) -> str:
    """A project of this test's own: the server is shared and keeps its database between runs."""
    identifier = f"tl-{secrets.token_hex(4)}"
    body = {"project": {"name": identifier, "identifier": identifier, "is_public": False, "tracker_ids": [1]}}
    redmine.request("POST", "/projects.json", body)
    return identifier


def config(redmine: Redmine, project: str, **extra: Any) -> RedmineConfig:
    return RedmineConfig.model_validate(
        {"base_url": redmine.url, "api_key": redmine.api_key, "projects": [project], **extra}
    )


def ctx(topics: TopicNames, publisher: Any = None) -> ConnectorContext:
    return ConnectorContext(name=NAME, topics=topics, publisher=publisher or RecordingPublisher())


def records(bootstrap: str, topics: TopicNames) -> list[Envelope[Any]]:
    return envelopes(bootstrap, topics.records, RecordEvent)


def comments(bootstrap: str, topics: TopicNames) -> list[Envelope[Any]]:
    return envelopes(bootstrap, topics.record_comments, RecordComment)


async def test_polling_publishes_issues_and_notes_once_with_their_visibility_and_resumes_after_a_restart(
    redmine: Redmine, project: str, kafka_bootstrap: str, topics: TopicNames
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=2)
    first = redmine.create_issue("Checkout is down", project_id=project)
    redmine.add_note(first["id"], "Looking into it")
    redmine.add_note(first["id"], "Root cause: the DB password leaked", private=True)
    settings = config(redmine, project, since=since, poll_interval_s=1)
    key_a = f"{NAME}:{first['id']}"

    def first_seen() -> bool:
        ids = [e.subject for e in records(kafka_bootstrap, topics)]
        return key_a in ids and len(comments(kafka_bootstrap, topics)) >= 2

    polls = await poll_for_a_while(
        kafka_bootstrap, topics, NAME, RedmineIssuesPoller(settings, ctx(topics), project=project), first_seen
    )
    assert polls >= 4
    published = [e for e in records(kafka_bootstrap, topics) if e.subject == key_a]
    assert len(published) == 1, "later polls must publish nothing new"
    record = published[0].data
    assert (record.title, record.status, record.project) == ("Checkout is down", "New", project)
    assert record.url == f"{redmine.url}/issues/{first['id']}"
    by_body = {e.data.body: e for e in comments(kafka_bootstrap, topics)}
    public, private = by_body["Looking into it"], by_body["Root cause: the DB password leaked"]
    assert (public.data.public, public.visibility) == (True, "internal")
    assert (private.data.public, private.visibility, private.data.visibility) == (False, "restricted", "restricted")
    assert public.data.by_threadlink  # written with threadlink's own key in this test

    # A new process resumes at the checkpoint: only what changed since is published.
    second = redmine.create_issue("Search is slow", project_id=project)
    key_b = f"{NAME}:{second['id']}"
    restarted = RedmineIssuesPoller(settings, ctx(topics), project=project)
    await poll_for_a_while(
        kafka_bootstrap, topics, NAME, restarted, lambda: key_b in [e.subject for e in records(kafka_bootstrap, topics)]
    )
    subjects = [e.subject for e in records(kafka_bootstrap, topics)]
    assert subjects.count(key_a) == 1 and subjects.count(key_b) == 1
    assert len(comments(kafka_bootstrap, topics)) == 2


async def test_sink_opens_one_ticket_per_thread_adds_notes_and_looks_issues_up(
    redmine: Redmine, project: str, topics: TopicNames
) -> None:
    publisher = RecordingPublisher()
    sink = build(config(redmine, project), ctx(topics, publisher)).sink
    assert sink is not None
    create = CreateTicket(
        command_id="c1",
        target=NAME,
        thread=THREAD,
        project=project,
        summary="Checkout is down",
        description="From Slack",
    )
    envelope = Envelope.wrap(create, type="io.threadlink.command.create_ticket", source_system="streams")
    try:
        made = await sink.execute(create, envelope)
        again = await sink.execute(create.model_copy(update={"command_id": "c2"}), envelope)
        assert made.created is not None and again.created == made.created and again.recovered
        listed = redmine.request("GET", f"/issues.json?project_id={project}&status_id=*")
        assert listed["total_count"] == 1
        key = made.created.key

        note = AddComment(
            command_id="n1",
            target=NAME,
            record=RecordRef(system=NAME, key=key),
            thread=THREAD,
            body="Discussed in a Slack thread",
            permalink="https://acme.slack.com/archives/C1/p1700000000000100",
        )
        await sink.execute(note, envelope)
        journals = redmine.request("GET", f"/issues/{key}.json?include=journals")["issue"]["journals"]
        assert [j["notes"] for j in journals] == [
            "Discussed in a Slack thread https://acme.slack.com/archives/C1/p1700000000000100"
        ]

        found = await sink.execute(
            FetchRecord(command_id="f1", target=NAME, record=RecordRef(system=NAME, key=key)), envelope
        )
        missing = await sink.execute(
            FetchRecord(command_id="f2", target=NAME, record=RecordRef(system=NAME, key="999999")), envelope
        )
        assert (found.found, missing.found) == (True, False)
        kinds = [p.envelope.data.kind for p in publisher.published]
        assert kinds == ["ticket", "missing"]
        assert publisher.published[0].envelope.data.title.startswith("Checkout is down [tl-")
        with pytest.raises(SkippableError, match="no project"):
            await sink.execute(create.model_copy(update={"project": "no-such-project"}), envelope)
    finally:
        await sink.stop()

    wrong = build(config(redmine, project, api_key="0" * 40), ctx(topics)).sink
    assert wrong is not None
    try:
        with pytest.raises(AuthError) as refused:
            await wrong.execute(
                FetchRecord(command_id="f3", target=NAME, record=RecordRef(system=NAME, key=key)), envelope
            )
        assert "0" * 40 not in str(refused.value)
    finally:
        await wrong.stop()
    with pytest.raises(urllib.error.HTTPError):  # login_required: a wrong key reads nothing
        redmine.request("GET", f"/issues/{key}.json", api_key="0" * 40)
