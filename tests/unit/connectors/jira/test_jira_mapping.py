from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.errors import SkippableError
from connectors.jira.config import CardField, JiraConfig, JiraFields
from connectors.jira.mapping import (
    BACKLINK_PROPERTY,
    adf_text,
    backlink_adf,
    backlink_command_id,
    backlink_property,
    comment_from_webhook,
    field_text,
    parse_jira_time,
    project_of_key,
    ticket_from_issue,
)
from sandbox.contracts.jira import adf_problems
from schemas.records import RecordRef
from schemas.social import ThreadRef

pytestmark = pytest.mark.unit

THREAD = ThreadRef(platform="slack", workspace="T01", channel="C01", thread_id="1700000000.000100")


def issue(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "summary": "Checkout is down",
        "status": {"name": "In Progress", "id": "3"},
        "assignee": {"accountId": "abc", "displayName": "Ada Lovelace"},
        "priority": {"name": "High", "id": "2"},
        "project": {"key": "OPS", "name": "Operations"},
        "updated": "2024-03-01T10:20:30.456+0000",
    }
    base.update(fields)
    return {"id": "10001", "key": "OPS-7", "self": "https://acme.atlassian.net/rest/api/3/issue/10001", "fields": base}


def test_issue_becomes_a_ticket_record(config: JiraConfig) -> None:
    record = ticket_from_issue(issue(), system="jira", config=config)
    assert record.ref == RecordRef(system="jira", key="OPS-7")
    assert record.title == "Checkout is down"
    assert record.status == "In Progress"
    assert record.assignee == "Ada Lovelace"
    assert record.priority == "High"
    assert record.project == "OPS"
    assert record.url == "https://acme.atlassian.net/browse/OPS-7"
    assert record.updated_at == datetime(2024, 3, 1, 10, 20, 30, 456000, tzinfo=UTC)
    assert record.visibility == "restricted"  # OPS is listed as restricted


def test_unassigned_issue_in_an_unlisted_project(config: JiraConfig) -> None:
    record = ticket_from_issue(issue(assignee=None, project={"key": "HR"}, priority=None), system="jira", config=config)
    assert record.assignee is None
    assert record.priority is None
    assert record.visibility == config.default_visibility == "internal"


@pytest.mark.parametrize("bad", [None, {}, {"key": ""}, {"key": "OPS-1"}, {"key": "OPS-1", "fields": []}])
def test_issue_without_key_or_fields_is_skippable(config: JiraConfig, bad: object) -> None:
    with pytest.raises(SkippableError):
        ticket_from_issue(bad, system="jira", config=config)


def test_jira_times() -> None:
    assert parse_jira_time(1709288430456) == datetime(2024, 3, 1, 10, 20, 30, 456000, tzinfo=UTC)
    assert parse_jira_time("2024-03-01T12:20:30.000+0200") == datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)
    assert parse_jira_time("yesterday") is None
    assert parse_jira_time(None) is None


def test_project_of_key() -> None:
    assert project_of_key("OPS-12") == "OPS"
    assert project_of_key("ops-12") == "OPS"
    assert project_of_key("10001") is None


def test_backlink_with_permalink_is_text_and_a_link_mark() -> None:
    permalink = "https://acme.slack.com/archives/C01/p1700000000000100"
    doc = backlink_adf(THREAD, permalink=permalink)
    assert doc == {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "Discussed in a slack thread "},
                    {"type": "text", "text": permalink, "marks": [{"type": "link", "attrs": {"href": permalink}}]},
                ],
            }
        ],
    }
    assert adf_problems(doc) == []


def test_backlink_without_permalink_names_the_thread() -> None:
    doc = backlink_adf(THREAD.model_copy(update={"platform": "matrix"}))
    [paragraph] = doc["content"]
    assert adf_text(doc) == f"Discussed in a matrix thread matrix:T01:C01:{THREAD.thread_id}"
    assert "marks" not in paragraph["content"][-1]
    assert adf_problems(doc) == []


def test_backlink_uses_the_commands_words_and_keeps_nodes_non_empty() -> None:
    doc = backlink_adf(THREAD, permalink="https://x.example/p1", text="Seen in #ops\n\nby the *on-call*")
    # The words are Markdown: a blank line parts paragraphs, the link ends the last one.
    assert [block["type"] for block in doc["content"]] == ["paragraph", "paragraph"]
    assert doc["content"][1]["content"] == [
        {"type": "text", "text": "by the "},
        {"type": "text", "text": "on-call", "marks": [{"type": "em"}]},
        {"type": "text", "text": " "},
        {
            "type": "text",
            "text": "https://x.example/p1",
            "marks": [{"type": "link", "attrs": {"href": "https://x.example/p1"}}],
        },
    ]
    assert adf_text(doc) == "Seen in #ops\nby the on-call https://x.example/p1"
    assert adf_problems(doc) == []  # no empty text node anywhere


def test_backlink_ignores_a_permalink_that_is_not_http() -> None:
    doc = backlink_adf(THREAD, permalink="javascript:alert(1)")
    assert "marks" not in doc["content"][0]["content"][0]


def test_a_backlink_is_tagged_with_its_command_id_and_read_back() -> None:
    properties = backlink_property("add_comment-1")
    assert properties == {BACKLINK_PROPERTY: {"command_id": "add_comment-1"}}
    listed = {"id": "10000", "properties": [{"key": k, "value": v} for k, v in properties.items()]}
    assert backlink_command_id(listed) == "add_comment-1"


@pytest.mark.parametrize(
    "comment",
    [
        {"id": "1"},  # listed without its properties
        {"id": "1", "properties": []},
        {"id": "1", "properties": [{"key": "other", "value": {"command_id": "add_comment-1"}}]},
        {"id": "1", "properties": [{"key": BACKLINK_PROPERTY, "value": "add_comment-1"}]},
        {"id": "1", "properties": [{"key": BACKLINK_PROPERTY, "value": {"command_id": 7}}]},
        {"id": "1", "properties": "nonsense"},
        None,
    ],
)
def test_other_comments_carry_no_command_id(comment: object) -> None:
    assert backlink_command_id(comment) is None


@pytest.mark.parametrize(
    ("author", "own"),
    [
        ({"accountId": "5b10a2844c20165700ede21g", "displayName": "threadlink"}, True),
        ({"accountId": "other", "emailAddress": "Bot@Acme.com"}, True),
        ({"accountId": "other", "emailAddress": "ada@acme.com"}, False),
        ({"accountId": "other"}, False),
    ],
)
def test_a_comment_by_threadlinks_own_account_is_its_own(author: dict[str, str], own: bool) -> None:
    payload = {
        "webhookEvent": "comment_created",
        "issue": {"id": "1", "key": "OPS-1"},
        "comment": {"id": "7", "author": author, "body": "Mentioned in a slack thread", "created": 1709288430456},
    }
    comment = comment_from_webhook(
        payload, system="jira", own_account_id="5b10a2844c20165700ede21g", own_email="bot@acme.com"
    )
    assert comment.by_threadlink is own


def test_the_field_mapping_picks_status_assignee_priority_and_more_fields_for_the_card(config: JiraConfig) -> None:
    mapped = config.model_copy(
        update={
            "fields": JiraFields(
                priority="customfield_10020",
                shown=[
                    CardField(field="customfield_10010", label="Team"),
                    CardField(field="components", label="Components"),
                    CardField(field="duedate", label="Due"),
                    CardField(field="customfield_10099", label="Empty"),
                ],
            )
        }
    )
    fields = {
        "customfield_10020": {"value": "Sev 1", "id": "10400"},  # a select list option
        "customfield_10010": [{"value": "Payments"}, {"value": "Checkout"}],
        "components": [{"name": "API"}, {"name": "Web"}],
        "duedate": "2024-03-08",
        "customfield_10099": None,
    }
    record = ticket_from_issue(issue(**fields), system="jira", config=mapped)
    assert record.priority == "Sev 1" and record.status == "In Progress"
    assert [(f.label, f.value) for f in record.fields] == [
        ("Status", "In Progress"),
        ("Assignee", "Ada Lovelace"),
        ("Priority", "Sev 1"),
        ("Team", "Payments, Checkout"),
        ("Components", "API, Web"),
        ("Due", "2024-03-08"),
    ]
    assert record.labels == []


def test_field_text_reads_the_shapes_jira_fields_come_in() -> None:
    doc = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "hi"}]}]}
    assert field_text({"displayName": "Ada", "value": "x"}) == "Ada"
    assert field_text(3.5) == "3.5" and field_text(True) == "yes" and field_text("") is None
    assert field_text(doc) == "hi" and field_text({"id": "1"}) is None
    assert field_text([{"name": str(n)} for n in range(100)]) == ", ".join(str(n) for n in range(20))


def test_a_mapped_field_with_a_bad_id_is_a_clear_config_error() -> None:
    with pytest.raises(ValueError, match=r"fields\.shown\.0\.field"):
        JiraConfig.model_validate(
            {
                "base_url": "https://acme.atlassian.net",
                "email": "a@b.c",
                "api_token": "t",
                "webhook_secret": "s",
                "fields": {"shown": [{"field": "custom field 1", "label": "Team"}]},
            }
        )
