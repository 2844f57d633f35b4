"""Jira's polling fallback on the real broker, against the Jira stand-in (which checks every
request against Jira's OpenAPI document): a JQL search from a checkpointed cursor, paged, with
comments and their visibility, resuming after a restart without duplicates or gaps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import ConnectorContext
from connectors.jira.config import JiraConfig
from connectors.jira.poller import JiraIssuesPoller
from sandbox.jira_api import FakeJira
from schemas.envelope import Envelope
from schemas.records import RecordComment, RecordEvent
from schemas.topics import TopicNames
from tests.unit.connectors.recording import RecordingPublisher
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics

from .kafka_helpers import envelopes, poll_for_a_while

pytestmark = pytest.mark.integration

NAME = "jira"
EMAIL, TOKEN = "bot@example.com", "jira-token"


@pytest.fixture
async def jira(vendor_specs: str) -> AsyncIterator[FakeJira]:
    fake = FakeJira(email=EMAIL, api_token=TOKEN, webhook_secret="unused")
    await fake.start()
    yield fake
    await fake.stop()
    fake.assert_no_violations()


@pytest.fixture
def topics(kafka_bootstrap: str, namespace: str, request: pytest.FixtureRequest) -> TopicNames:
    settings = Settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "namespace": f"{namespace}-jp-{request.node.name[-10:].lower()}"}
    )
    apply_topics(settings)
    return settings.kafka.topics


def config(jira: FakeJira, **polling: Any) -> JiraConfig:
    return JiraConfig.model_validate(
        {
            "base_url": jira.url,
            "email": EMAIL,
            "api_token": TOKEN,
            "polling": {"interval_s": 5, **polling},
            "project_visibility": {"OPS": "internal"},
        }
    )


def poller(jira: FakeJira, topics: TopicNames, **polling: Any) -> JiraIssuesPoller:
    poller = JiraIssuesPoller(config(jira, **polling), ConnectorContext(NAME, topics, RecordingPublisher()))
    poller.interval_s = 0.2  # the config's floor is 5 s; a test needs no pause between polls
    return poller


def records(bootstrap: str, topics: TopicNames) -> list[Envelope[Any]]:
    return envelopes(bootstrap, topics.records, RecordEvent)


def comments(bootstrap: str, topics: TopicNames) -> list[Envelope[Any]]:
    return envelopes(bootstrap, topics.record_comments, RecordComment)


async def test_polling_publishes_the_selected_issues_and_their_comments_once_across_pages_and_a_restart(
    jira: FakeJira, kafka_bootstrap: str, topics: TopicNames
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    for n in range(1, 8):
        await jira.put_issue(f"OPS-{n}", f"Ops issue {n}", status="To Do")
    await jira.put_issue("WEB-1", "Not selected by the JQL")
    await jira.add_agent_comment("OPS-1", "We are on it")
    await jira.add_agent_comment("OPS-1", "The DB password leaked", public=False)
    selected = {f"{NAME}:OPS-{n}" for n in range(1, 8)}

    def all_seen() -> bool:
        return {e.subject for e in records(kafka_bootstrap, topics)} >= selected

    first = poller(jira, topics, jql="project = OPS", page_size=3, max_pages_per_poll=2, since=since)
    polls = await poll_for_a_while(kafka_bootstrap, topics, NAME, first, all_seen)
    subjects = [e.subject for e in records(kafka_bootstrap, topics)]
    assert sorted(subjects) == sorted(selected), "each selected issue once, WEB-1 not at all, later polls nothing"
    assert polls >= 5  # 7 issues at 3 a page and 2 pages a poll: the backlog took more than one poll
    searches = [r for r in jira.requests if r.path == "/rest/api/3/search"]
    assert all("ORDER BY updated ASC, key ASC" in r.json["jql"] for r in searches)
    assert {r.json["startAt"] for r in searches} >= {0, 3}

    said = {e.data.body: e for e in comments(kafka_bootstrap, topics)}
    public, internal = said["We are on it"], said["The DB password leaked"]
    assert (public.data.public, internal.data.public) == (True, False)  # an internal note is never mirrored

    # A new owner resumes at the checkpoint: a changed issue and a new comment, nothing else again.
    await jira.put_issue("OPS-2", "Ops issue 2", status="Done")
    await jira.add_agent_comment("OPS-3", "Fixed in 1.2")
    restarted = poller(jira, topics, jql="project = OPS", page_size=3, max_pages_per_poll=2, since=since)

    def changes_seen() -> bool:
        statuses = [e.data.status for e in records(kafka_bootstrap, topics) if e.subject == f"{NAME}:OPS-2"]
        return "Done" in statuses and "Fixed in 1.2" in [e.data.body for e in comments(kafka_bootstrap, topics)]

    await poll_for_a_while(kafka_bootstrap, topics, NAME, restarted, changes_seen)
    subjects = [e.subject for e in records(kafka_bootstrap, topics)]
    assert subjects.count(f"{NAME}:OPS-2") == 2 and subjects.count(f"{NAME}:OPS-3") == 2
    assert subjects.count(f"{NAME}:OPS-1") == 1 and subjects.count(f"{NAME}:OPS-7") == 1
    assert sorted(e.data.body for e in comments(kafka_bootstrap, topics)) == sorted(
        ["We are on it", "The DB password leaked", "Fixed in 1.2"]
    )
