"""The connector's webhook behind the runtime's HTTP server, with FakeSlack delivering events
the way Slack does (signed, retried, echoing the bot's own posts)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web

from connectors.base import ConnectorContext
from connectors.runtime.webhooks import build_app
from connectors.slack.connector import PLUGIN
from connectors.slack.sink import SlackSink
from connectors.slack.source import SlackEventsSource
from sandbox.slack_api import FakeSlack
from schemas.commands import PostCard
from schemas.envelope import Envelope
from schemas.records import RecordRef, TicketRecord
from schemas.social import ThreadRef

from .conftest import APP_ID, CHANNEL, TEAM_ID, RecordingPublisher, make_config

pytestmark = pytest.mark.unit

StartFake = Callable[..., Awaitable[FakeSlack]]


@dataclass
class Wired:
    fake: FakeSlack
    source: SlackEventsSource
    sink: SlackSink


Connect = Callable[..., Awaitable[Wired]]


@pytest.fixture
async def connect(start_fake_slack: StartFake, ctx: ConnectorContext) -> AsyncIterator[Connect]:
    """`await connect(**fake_overrides)`: a FakeSlack, and the Slack connector (its ids not
    configured: learned with auth.test at start) served by the runtime's webhook server,
    with the fake's events_url pointing at it."""
    cleanup: list[Callable[[], Awaitable[None]]] = []

    async def wire(**overrides: object) -> Wired:
        fake = await start_fake_slack(**overrides)
        parts = PLUGIN.build(make_config(api_base_url=fake.api_url, app_id=APP_ID), ctx)
        source, sink = parts.webhooks[0], parts.sink
        assert isinstance(source, SlackEventsSource) and isinstance(sink, SlackSink)
        runner = web.AppRunner(build_app([(ctx.name, source)]), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        cleanup.extend([runner.cleanup, source.stop, sink.stop])
        await source.start()
        await sink.start()
        fake.events_url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/{ctx.name}{source.path}"
        return Wired(fake, source, sink)

    yield wire
    for step in reversed(cleanup):
        await step()


async def test_a_user_message_reaches_kafka_once(connect: Connect, publisher: RecordingPublisher) -> None:
    fake = (await connect()).fake
    assert await fake.verify_events_url()
    ts = await fake.post_user_message(CHANNEL, "Is PROJ-1 back?", user="U0ALICE")

    (published,) = publisher.published
    message = published.envelope.data
    assert (message.thread.id, message.author.id, message.author.is_threadlink) == (
        f"slack:{TEAM_ID}:{CHANNEL}:{ts}",
        "U0ALICE",
        False,
    )
    assert published.envelope.id == f"slack:{fake.events[-1]['event_id']}"
    assert [d.status for d in fake.deliveries] == [200]

    assert await fake.redeliver(fake.events[-1]["event_id"]) == 200  # Slack retrying: answered, not republished
    assert len(publisher.published) == 1
    fake.assert_no_violations()


async def test_the_bots_own_card_comes_back_marked_as_threadlinks(
    connect: Connect, publisher: RecordingPublisher
) -> None:
    wired = await connect()
    fake, sink = wired.fake, wired.sink
    assert len(fake.calls("auth.test")) == 1  # ids learned at start
    root = await fake.post_user_message(CHANNEL, "PROJ-1?")
    record = TicketRecord(ref=RecordRef(system="jira", key="PROJ-1"), title="Login fails", status="Open")
    command = PostCard(
        command_id="p1",
        target="slack",
        destination=ThreadRef(platform="slack", workspace=TEAM_ID, channel=CHANNEL, thread_id=root),
        record=record,
        in_reply_to=root,
    )
    card = await sink.execute(
        command, Envelope.wrap(command, type="io.threadlink.command.post_card", source_system="t")
    )
    await fake.wait_for_deliveries()

    echoed = publisher.published[-1].envelope.data
    assert (echoed.message_id, echoed.thread.thread_id) == (card.message_id, root)
    assert echoed.author.is_bot and echoed.author.is_threadlink  # streams never answer it: no loop
    fake.assert_no_violations()


async def test_a_failed_publish_is_retried_by_slack(connect: Connect, publisher: RecordingPublisher) -> None:
    fake = (await connect()).fake
    publisher.fail_times = 1  # the broker is away for the first delivery
    await fake.post_user_message(CHANNEL, "PROJ-1?")

    assert [(d.retry_num, d.status, d.reason) for d in fake.deliveries] == [(0, 503, "http_error"), (1, 200, None)]
    assert len(publisher.published) == 1
    fake.assert_no_violations()


async def test_a_wrong_signing_secret_is_refused_and_nothing_published(
    connect: Connect, publisher: RecordingPublisher
) -> None:
    fake = (await connect(signing_secret="not-the-configured-one")).fake
    await fake.post_user_message(CHANNEL, "PROJ-1?")

    assert [d.status for d in fake.deliveries] == [401, 401, 401, 401]  # Slack gives up after 3 retries
    assert publisher.published == []
