"""Permalinks as Slack makes them (chat.getPermalink), against FakeSlack (which checks every call
and answer against Slack's Web API spec): the client call, and the events source asking for it
only where the config says (local / auto / api), once per message, falling back to the built
link when Slack does not answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from pydantic import ValidationError

from connectors.base import ConnectorContext
from connectors.errors import AuthError, SkippableError
from connectors.runtime.webhooks import build_app
from connectors.slack.client import SlackClient
from connectors.slack.connector import PLUGIN
from connectors.slack.permalinks import needs_slacks_link
from connectors.slack.source import SlackEventsSource
from sandbox.slack_api import FakeSlack
from schemas.social import SocialMessage

from .conftest import APP_ID, CHANNEL, RecordingPublisher, make_config

pytestmark = pytest.mark.unit

GRID = "https://acme-org.enterprise.slack.com"
LOCAL = "https://sandbox.slack.com"
StartFake = Callable[..., Awaitable[FakeSlack]]
Connect = Callable[..., Awaitable[FakeSlack]]


@pytest.fixture
async def connect(start_fake_slack: StartFake, ctx: ConnectorContext) -> AsyncIterator[Connect]:
    """`await connect(permalinks=...)`: a FakeSlack whose chat.getPermalink links go through an
    Enterprise Grid domain, and the Slack events source behind the runtime's webhook server."""
    cleanup: list[Callable[[], Awaitable[None]]] = []

    async def wire(**config: object) -> FakeSlack:
        fake = await start_fake_slack(permalink_base=GRID)
        parts = PLUGIN.build(make_config(api_base_url=fake.api_url, app_id=APP_ID, **config), ctx)
        source = parts.webhooks[0]
        assert isinstance(source, SlackEventsSource)
        runner = web.AppRunner(build_app([(ctx.name, source)]), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        cleanup.extend([runner.cleanup, source.stop])
        await source.start()
        fake.events_url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/{ctx.name}{source.path}"
        return fake

    yield wire
    for step in reversed(cleanup):
        await step()


def _links(publisher: RecordingPublisher) -> list[str | None]:
    return [p.envelope.data.permalink for p in publisher.published if isinstance(p.envelope.data, SocialMessage)]


async def test_the_client_asks_slack_for_a_root_and_a_reply_with_a_get_and_the_token_in_the_header(
    start_fake_slack: StartFake,
) -> None:
    fake = await start_fake_slack(permalink_base=GRID)
    root = await fake.post_user_message(CHANNEL, "Is PROJ-1 back?")
    reply = await fake.post_user_message(CHANNEL, "still", thread_ts=root)
    client = SlackClient(make_config(api_base_url=fake.api_url))
    try:
        assert await client.permalink(CHANNEL, root) == f"{GRID}/archives/{CHANNEL}/p{root.replace('.', '')}"
        assert await client.permalink(CHANNEL, reply) == (
            f"{GRID}/archives/{CHANNEL}/p{reply.replace('.', '')}?thread_ts={root}&cid={CHANNEL}"
        )
        with pytest.raises(SkippableError, match="message_not_found"):
            await client.permalink(CHANNEL, "1.000001")
    finally:
        await client.aclose()
    calls = fake.calls("chat.getPermalink")
    assert [c.method for c in calls] == ["GET"] * 3
    assert all("token" not in c.params and c.headers["Authorization"].startswith("Bearer ") for c in calls)
    fake.assert_no_violations()

    stranger = SlackClient(make_config(api_base_url=fake.api_url, bot_token="xoxb-wrong"))
    try:
        with pytest.raises(AuthError, match="invalid_auth"):
            await stranger.permalink(CHANNEL, root)
    finally:
        await stranger.aclose()


async def test_local_builds_the_link_and_asks_nothing(connect: Connect, publisher: RecordingPublisher) -> None:
    fake = await connect()
    ts = await fake.post_user_message(CHANNEL, "Is PROJ-1 back?")
    assert _links(publisher) == [f"{LOCAL}/archives/{CHANNEL}/p{ts.replace('.', '')}"]
    assert fake.calls("chat.getPermalink") == []


async def test_api_asks_slack_once_per_message_whatever_its_edits(
    connect: Connect, publisher: RecordingPublisher
) -> None:
    fake = await connect(permalinks="api")
    root = await fake.post_user_message(CHANNEL, "Is PROJ-1 back?")
    reply = await fake.post_user_message(CHANNEL, "still broken", thread_ts=root)
    await fake.edit_user_message(CHANNEL, reply, "still broken, PROJ-2 too")
    await fake.wait_for_deliveries()
    root_link = f"{GRID}/archives/{CHANNEL}/p{root.replace('.', '')}"
    reply_link = f"{GRID}/archives/{CHANNEL}/p{reply.replace('.', '')}?thread_ts={root}&cid={CHANNEL}"
    assert _links(publisher) == [root_link, reply_link, reply_link]
    assert [c.params["message_ts"] for c in fake.calls("chat.getPermalink")] == [root, reply]  # the edit: cached
    fake.assert_no_violations()


async def test_auto_asks_only_for_slack_connect_channels(connect: Connect, publisher: RecordingPublisher) -> None:
    fake = await connect(permalinks="auto")
    fake.add_channel("C0SHARED01", ext_shared=True)
    inside = await fake.post_user_message(CHANNEL, "Is PROJ-1 back?")
    shared = await fake.post_user_message("C0SHARED01", "Is PROJ-1 back for you too?")
    assert _links(publisher) == [
        f"{LOCAL}/archives/{CHANNEL}/p{inside.replace('.', '')}",
        f"{GRID}/archives/C0SHARED01/p{shared.replace('.', '')}",
    ]
    assert [c.params["channel"] for c in fake.calls("chat.getPermalink")] == ["C0SHARED01"]
    fake.assert_no_violations()


async def test_a_failing_or_slow_answer_keeps_the_built_link_and_the_event_is_still_published(
    connect: Connect, publisher: RecordingPublisher
) -> None:
    fake = await connect(permalinks="api", permalink_timeout_s=0.2)
    fake.fail_next("chat.getPermalink", "internal_error")
    fake.fail_next("chat.getPermalink", None, status=200, delay_s=2.0)
    first = await fake.post_user_message(CHANNEL, "Is PROJ-1 back?")
    second = await fake.post_user_message(CHANNEL, "PROJ-2?")
    third = await fake.post_user_message(CHANNEL, "PROJ-3?")
    assert _links(publisher) == [
        f"{LOCAL}/archives/{CHANNEL}/p{first.replace('.', '')}",
        f"{LOCAL}/archives/{CHANNEL}/p{second.replace('.', '')}",
        f"{GRID}/archives/{CHANNEL}/p{third.replace('.', '')}",
    ]
    assert all(d.status == 200 for d in fake.deliveries)


def test_slack_connect_and_enterprise_grid_events_need_slacks_link() -> None:
    assert needs_slacks_link({"is_ext_shared_channel": True})
    assert needs_slacks_link({"enterprise_id": "E0001"})
    assert needs_slacks_link({"authorizations": [{"enterprise_id": "E0001", "team_id": "T1"}]})
    assert not needs_slacks_link({"is_ext_shared_channel": False, "enterprise_id": None, "authorizations": [{}]})


def test_a_mistyped_mode_is_a_located_config_error() -> None:
    with pytest.raises(ValidationError) as refused:
        make_config(permalinks="grid")
    (problem,) = refused.value.errors()
    assert problem["loc"] == ("permalinks",) and "'local', 'auto' or 'api'" in problem["msg"]
