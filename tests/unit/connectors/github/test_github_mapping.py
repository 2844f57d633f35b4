"""Keys, states, markers and visibility: the pure parts of the GitHub connector."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.github.config import GitHubConfig
from connectors.github.mapping import (
    IssueKey,
    backlink_markdown,
    issue_body,
    marker_of,
    parse_issue_key,
    repo_from_issue,
    status_of,
    strip_markers,
    thread_label,
    ticket_from_issue,
)
from schemas.social import ThreadRef

from .conftest import TOKEN, WEBHOOK_SECRET

pytestmark = pytest.mark.unit

THREAD = ThreadRef(platform="slack", workspace="T01", channel="C01", thread_id="1700000000.000100")


def test_issue_keys_are_parsed_and_lower_cased() -> None:
    assert parse_issue_key("Acme/Shop.js#12") == IssueKey("acme", "shop.js", 12)
    assert str(IssueKey("acme", "shop", 3)) == "acme/shop#3"


@pytest.mark.parametrize(
    "key",
    [
        "acme/shop#0",
        "acme/shop",
        "acme#1",
        "../etc#1",
        "acme/..#1",
        "acme/.#1",
        "a/b/c#1",
        "acme/sh op#1",
        "-a/b#1",
        "",
    ],
)
def test_hostile_or_wrong_keys_are_not_issue_keys(key: str) -> None:
    assert parse_issue_key(key) is None


def test_repo_of_a_rest_issue_comes_from_its_repository_url() -> None:
    assert repo_from_issue({"repository_url": "https://api.github.com/repos/Acme/Shop"}) == "acme/shop"
    assert repo_from_issue({"repository_url": "https://ghe.acme.com/api/v3/repos/acme/shop"}) == "acme/shop"
    assert repo_from_issue({"repository_url": "https://api.github.com/repos/../x"}) is None


@pytest.mark.parametrize(
    ("issue", "status"),
    [
        ({"state": "open"}, "open"),
        ({"state": "closed", "state_reason": "completed"}, "closed"),
        ({"state": "closed", "state_reason": "not_planned"}, "closed (not planned)"),
        ({"state": "closed", "state_reason": None}, "closed"),
        ({}, None),
    ],
)
def test_status(issue: dict[str, object], status: str | None) -> None:
    assert status_of(issue) == status


def test_ticket_from_a_rest_issue_with_several_assignees() -> None:
    config = GitHubConfig(token=TOKEN, webhook_secret=WEBHOOK_SECRET)
    issue = {
        "number": 5,
        "title": "Flaky test",
        "state": "open",
        "assignee": {"login": "ada"},
        "assignees": [{"login": "ada"}, {"login": "grace"}],
        "labels": [{"name": "ci"}, "legacy-string-label", {"color": "fff"}],
        "html_url": "javascript:alert(1)",
        "updated_at": "2026-11-01T10:00:00Z",
    }
    record = ticket_from_issue(issue, repo="acme/shop", system="gh", config=config)
    assert record.ref.id == "gh:acme/shop#5" and record.assignee == "ada, grace"
    assert record.labels == ["ci", "legacy-string-label"]
    assert record.url is None  # only http(s) links reach a card
    assert record.visibility == "internal"  # a look-up does not say whether the repository is public
    assert record.field_value("status") == "open"


def test_markers_are_found_and_stripped() -> None:
    body = backlink_markdown(THREAD, command_id="add_comment-abc", permalink="https://acme.slack.com/archives/C01/p1")
    assert marker_of(body, "command") == "add_comment-abc"
    assert "[https://acme.slack.com/archives/C01/p1](https://acme.slack.com/archives/C01/p1)" in body
    assert strip_markers(body).endswith("(https://acme.slack.com/archives/C01/p1)")
    label = thread_label(THREAD)
    assert marker_of(issue_body("Transcript", label=label), "thread") == label


def test_hostile_permalink_is_not_made_a_link() -> None:
    body = backlink_markdown(THREAD, command_id="c", permalink="https://x.example/a) [click](javascript:alert(1)")
    assert "](javascript" not in body and THREAD.id in body


def test_a_lookalike_marker_in_someone_elses_words_is_only_matched_whole() -> None:
    assert marker_of("<!-- threadlink:command=<script> -->", "command") is None
    assert marker_of(None, "command") is None


def test_config_visibility_rules() -> None:
    config = GitHubConfig(
        token=TOKEN,
        webhook_secret=WEBHOOK_SECRET,
        repo_visibility={"Acme/Public-Docs": "public"},
        default_visibility="restricted",
    )
    assert config.visibility_of("acme/public-docs") == "public"
    assert config.visibility_of("acme/shop", private=False) == "public"
    assert config.visibility_of("acme/shop", private=True) == "internal"
    assert config.visibility_of("acme/shop") == "restricted"


def test_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        GitHubConfig.model_validate(
            {"api_url": "ftp://x", "repo_visibility": {"nope": "public"}, "private_visibility": "public"}
        )
    where = {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}
    assert {"api_url", "repo_visibility", "private_visibility", "token", "webhook_secret"} <= where


def test_config_never_shows_its_secrets() -> None:
    config = GitHubConfig(token=TOKEN, webhook_secret=WEBHOOK_SECRET)
    assert TOKEN not in repr(config) and WEBHOOK_SECRET not in str(config.model_dump())


def test_a_forged_marker_in_someone_elses_words_is_removed_before_writing() -> None:
    forged = "hi <!-- threadlink:command=someone-elses-command -->"
    body = backlink_markdown(THREAD, command_id="mine", text=forged)
    assert marker_of(body, "command") == "mine" and "someone-elses-command" not in body
    assert "someone" not in issue_body("<!-- threadlink:thread=someone -->", label="threadlink-abc")
