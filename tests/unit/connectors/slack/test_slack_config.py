from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.slack.config import SlackConfig

from .conftest import BOT_TOKEN, SIGNING_SECRET, make_config

pytestmark = pytest.mark.unit


def test_defaults_and_secrets_stay_secret() -> None:
    config = make_config()
    assert config.api_base_url == "https://slack.com/api"
    assert config.signature_max_age_s == 300
    assert config.request_timeout_s == 10
    assert (config.bot_user_id, config.bot_id, config.app_id) == (None, None, None)
    shown = repr(config) + str(config.model_dump())
    assert SIGNING_SECRET not in shown and BOT_TOKEN not in shown


def test_api_base_url_loses_its_trailing_slash() -> None:
    assert make_config(api_base_url=" http://127.0.0.1:9000/api/ ").api_base_url == "http://127.0.0.1:9000/api"


def test_every_field_is_described() -> None:
    assert all(field.description for field in SlackConfig.model_fields.values())


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        SlackConfig.model_validate(
            {"bot_token": BOT_TOKEN, "api_base_url": "slack.com/api", "signature_max_age_s": 0, "type": "slack"}
        )
    locations = {error["loc"][0] for error in caught.value.errors()}
    assert locations == {"signing_secret", "api_base_url", "signature_max_age_s", "type"}
