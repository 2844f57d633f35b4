from __future__ import annotations

import pytest

from connectors.base import ConnectorContext
from connectors.registry import plugin_for
from connectors.slack.config import SlackConfig
from connectors.slack.connector import PLUGIN
from connectors.slack.interactivity import SlackInteractivitySource
from connectors.slack.sink import SlackSink
from connectors.slack.source import SlackEventsSource

from .conftest import BOT_TOKEN, SIGNING_SECRET, make_config

pytestmark = pytest.mark.unit


def test_plugin_is_registered_as_slack() -> None:
    assert plugin_for("slack") is PLUGIN
    assert (PLUGIN.kind, PLUGIN.config_model) == ("slack", SlackConfig)
    assert PLUGIN.description


def test_build_gives_the_events_and_interactivity_webhooks_and_the_card_sink_sharing_one_identity(
    ctx: ConnectorContext,
) -> None:
    parts = PLUGIN.build(make_config(app_id="A0THREADLNK"), ctx)
    source, buttons = parts.webhooks
    assert isinstance(source, SlackEventsSource) and source.path == "/events"
    assert isinstance(buttons, SlackInteractivitySource) and buttons.path == "/interactivity"
    assert isinstance(parts.sink, SlackSink)
    assert parts.pollers == []
    assert source._identity is parts.sink._identity is buttons._identity
    assert source._identity.app_id == "A0THREADLNK"


def test_build_validates_a_plain_mapping(ctx: ConnectorContext) -> None:
    parts = PLUGIN.build({"signing_secret": SIGNING_SECRET, "bot_token": BOT_TOKEN}, ctx)
    assert len(parts.webhooks) == 2
