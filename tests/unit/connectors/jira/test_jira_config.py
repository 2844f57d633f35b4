from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.base import ConnectorContext
from connectors.jira.config import JiraConfig
from connectors.jira.connector import PLUGIN
from connectors.jira.sink import JiraSink
from connectors.jira.source import JiraWebhookSource

pytestmark = pytest.mark.unit

VALID = {"base_url": "https://acme.atlassian.net/", "email": "bot@example.com", "api_token": "t", "webhook_secret": "s"}


def test_base_url_loses_its_trailing_slash_and_defaults_apply() -> None:
    config = JiraConfig.model_validate(VALID)
    assert config.base_url == "https://acme.atlassian.net"
    assert config.comment_backlinks is True
    assert config.request_timeout_s == 10
    assert config.visibility_of("ANY") == "internal"
    assert config.visibility_of(None) == "internal"


def test_every_problem_is_reported_at_once_with_its_location() -> None:
    with pytest.raises(ValidationError) as caught:
        JiraConfig.model_validate({"base_url": "ftp://acme", "project_visibility": {"OPS": "secret"}, "type": "jira"})
    locations = {error["loc"] for error in caught.value.errors()}
    assert {
        ("base_url",),
        ("email",),
        ("api_token",),
        ("project_visibility", "OPS"),
        ("type",),
    } <= locations
    assert "https://acme.atlassian.net" in str(caught.value)


def test_secrets_do_not_show_in_repr() -> None:
    config = JiraConfig.model_validate({**VALID, "api_token": "tok-123", "webhook_secret": "sec-456"})
    assert "tok-123" not in repr(config)
    assert "sec-456" not in repr(config)


def test_every_field_is_described() -> None:
    assert all(field.description for field in JiraConfig.model_fields.values())


def test_plugin_builds_a_webhook_source_and_a_sink(ctx: ConnectorContext) -> None:
    assert PLUGIN.kind == "jira"
    assert PLUGIN.config_model is JiraConfig
    parts = PLUGIN.build(PLUGIN.config_model.model_validate(VALID), ctx)
    assert len(parts.webhooks) == 1
    assert isinstance(parts.webhooks[0], JiraWebhookSource)
    assert parts.webhooks[0].path == ""
    assert isinstance(parts.sink, JiraSink)
    assert parts.pollers == []


def test_a_jira_without_webhook_secret_or_polling_is_a_clear_error() -> None:
    config = {key: value for key, value in VALID.items() if key != "webhook_secret"}
    with pytest.raises(ValidationError, match=r"set webhook_secret \(to receive Jira's webhooks\), polling"):
        JiraConfig.model_validate(config)
    with pytest.raises(ValidationError, match="leave out ORDER BY"):
        JiraConfig.model_validate({**config, "polling": {"jql": "project = OPS order by created"}})


def test_a_polling_only_jira_serves_no_webhook_and_polls(ctx: ConnectorContext) -> None:
    config = {key: value for key, value in VALID.items() if key != "webhook_secret"}
    parts = PLUGIN.build(JiraConfig.model_validate({**config, "polling": {"jql": "project = OPS"}}), ctx)
    assert parts.webhooks == [] and [p.name for p in parts.pollers] == ["issues"] and parts.sink is not None
