"""The Jira poller's answer to an issue it cannot map, without a broker: a dead letter in the
poll's own result (published in its transaction), the other issues published, the cursor past both."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import ConnectorContext
from connectors.jira.config import JiraConfig
from connectors.jira.poller import JiraIssuesPoller
from schemas.topics import TopicNames
from tests.unit.connectors.recording import RecordingPublisher

pytestmark = pytest.mark.unit

UPDATED = "2024-03-01T10:20:30.456+0000"


class ListedIssues:
    """The search answer of a JiraClient: one page with what it is given."""

    def __init__(self, issues: list[Any]) -> None:
        self.issues = issues

    async def search(self, jql: str, **_: Any) -> dict[str, Any]:
        return {"startAt": 0, "maxResults": 50, "total": len(self.issues), "issues": self.issues}

    issue_fields = ["summary"]


async def test_an_issue_the_poll_cannot_map_is_a_dead_letter_and_the_rest_is_published() -> None:
    config = JiraConfig.model_validate(
        {"base_url": "https://acme.atlassian.net", "email": "a@b.c", "api_token": "t", "polling": {}}
    )
    topics = TopicNames(namespace="test")
    good = {"key": "OPS-1", "fields": {"summary": "Fine", "updated": UPDATED}}
    broken = {"key": "OPS-2", "fields": "not an object"}
    poller = JiraIssuesPoller(
        config, ConnectorContext("jira", topics, RecordingPublisher()), client=ListedIssues([broken, good])
    )  # type: ignore[arg-type]
    result = await poller.poll({"since_ms": 0, "seen": {}})
    by_topic = {topic: envelope for topic, _key, envelope in result.events}
    assert set(by_topic) == {topics.records, topics.dead_letters}
    letter = by_topic[topics.dead_letters].data
    assert (letter.key, letter.topic, letter.error_kind) == ("OPS-2", "jira:jira", "invalid")
    assert "without fields" in letter.reason
    assert by_topic[topics.records].data.ref.key == "OPS-1"
    assert result.cursor["since_ms"] > 0  # past both: the broken one is not listed again as new
