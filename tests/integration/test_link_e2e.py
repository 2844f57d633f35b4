"""The whole slice, as a user would see it: a signed Slack webhook in, through the real broker
and the real processes, a card posted out by the Slack sink (and a back-link on the ticket).

"Nothing more happened" is never checked by sleeping: a later mention in the same thread, of a
ticket whose record travels on the same partition as the one that must show nothing, is made
and its card awaited (a sentinel). Its events follow the unwanted ones through every topic, so
had the unwanted card been coming, it would have come before the sentinel's."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from connectors.runtime.kafka import KafkaPublisher
from sandbox.slack_api import sign
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope
from schemas.links import LinkRequest
from schemas.records import RecordEvent, RecordMissing
from schemas.social import SocialEvent, SocialMessage
from schemas.topics import STREAM_PARTITIONS
from tests.integration.kafka_helpers import envelopes, key_on_partition_of, wait_for
from tests.integration.sandbox_deployment import SandboxDeployment, start_sandbox, stop_sandbox

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
def sandbox(
    kafka_bootstrap: str, namespace: str, tmp_path_factory: pytest.TempPathFactory, vendor_specs: str
) -> Iterator[SandboxDeployment]:
    run_dir: Path = tmp_path_factory.mktemp("deployment")
    deployment = start_sandbox(kafka_bootstrap, f"{namespace}-e2e", run_dir)
    yield deployment
    stop_sandbox(deployment)
    deployment.slack.assert_no_violations()
    deployment.jira.assert_no_violations()


@pytest.fixture
def channel() -> str:
    return "C" + secrets.token_hex(4).upper()


def put_issue(sandbox: SandboxDeployment, key: str, summary: str, *, webhook: bool = True) -> None:
    url = sandbox.jira.webhook_url
    if not webhook:
        sandbox.jira.webhook_url = None  # the ticket exists in Jira, threadlink never heard of it
    try:
        sandbox.loop.run(sandbox.jira.put_issue(key, summary, status="In Progress", assignee="Ada Lovelace"))
    finally:
        sandbox.jira.webhook_url = url


def beside(key: str, project: str) -> str:
    """A ticket key of `project` whose record (Kafka key `jira:<key>`) is on the partition of
    `key`'s in every record-keyed topic: its link request and its record events queue behind
    `key`'s."""
    record_id = key_on_partition_of(f"jira:{key}", STREAM_PARTITIONS, lambda n: f"jira:{project}-{n}")
    return record_id.removeprefix("jira:")


def with_key(key: str) -> Callable[[dict[str, object]], bool]:
    return lambda card: key in str(card.get("text", ""))


def sentinel_card(sandbox: SandboxDeployment, channel: str, ts: str, key: str) -> None:
    """Mention `key` in the thread of `ts` and wait for its card: whatever the thread's earlier
    messages were going to cause has happened by then (same thread: same social partition and
    same commands partition, in order)."""
    sandbox.post(channel, f"and what about {key}?", thread_ts=ts)
    wait_for(
        lambda: any(map(with_key(key), sandbox.cards(channel, ts))), timeout_s=120, what=f"the sentinel {key} card"
    )


def social_events(sandbox: SandboxDeployment, channel: str) -> list[Envelope[SocialMessage]]:
    kafka = sandbox.settings.kafka
    found = envelopes(kafka.bootstrap_servers or "", kafka.topics.social_events, SocialEvent)
    return [e for e in found if e.data.thread.channel == channel]


def test_mention_of_a_known_ticket_gets_its_card_and_the_ticket_hears_back(
    sandbox: SandboxDeployment, channel: str
) -> None:
    put_issue(sandbox, "SHOP-1", "Checkout fails for EU customers")
    ts = sandbox.post(channel, "Is the checkout outage SHOP-1?", user="U0ALICE")
    cards = wait_for(lambda: sandbox.cards(channel, ts), what="the card in the thread")
    assert len(cards) == 1
    card = cards[0]
    assert card["thread_ts"] == ts
    assert "SHOP-1" in card["text"] and "Checkout fails for EU customers" in card["text"]
    assert "In Progress" in json.dumps(card.get("blocks"))
    post = sandbox.slack.calls("chat.postMessage")[-1]
    assert post.headers.get("Authorization") != sandbox.ident.bot_token  # sent as Bearer, never raw
    comments = wait_for(lambda: sandbox.jira.comments("SHOP-1"), what="the back-link comment on SHOP-1")
    assert len(comments) == 1
    permalink = f"https://sandbox.slack.com/archives/{channel}/p{ts.replace('.', '')}"
    assert permalink in json.dumps(comments[0]["body"])  # a link mark back to the thread


def test_a_retried_backlink_leaves_one_comment_and_one_remote_link_to_the_thread(
    sandbox: SandboxDeployment, channel: str
) -> None:
    put_issue(sandbox, "SHOP-11", "Refunds stuck in pending")
    comments_path = "/rest/api/3/issue/SHOP-11/comment"
    links_path = "/rest/api/3/issue/SHOP-11/remotelink"
    # Jira stores the comment, but its answer is a 503: the sink runner retries the command.
    sandbox.jira.fail_next(503, path_prefix=comments_path, after_store=True)
    ts = sandbox.post(channel, "Refunds again, see SHOP-11", user="U0ALICE")

    def link_posts() -> list[object]:
        return [r for r in sandbox.jira.requests if r.method == "POST" and r.path == links_path]

    # The retry upserts the link again, then finds the stored comment instead of posting it twice.
    wait_for(lambda: len(link_posts()) >= 2, timeout_s=120, what="the retried back-link's second link upsert")
    wait_for(
        lambda: [r for r in sandbox.jira.requests if r.method == "GET" and r.path == comments_path],
        timeout_s=120,
        what="the retry looking for the stored back-link",
    )
    permalink = f"https://sandbox.slack.com/archives/{channel}/p{ts.replace('.', '')}"
    [link] = sandbox.jira.remote_links("SHOP-11")
    assert link["object"]["url"] == permalink
    assert len(sandbox.jira.comments("SHOP-11")) == 1
    assert len([r for r in sandbox.jira.requests if r.method == "POST" and r.path == comments_path]) == 1


def test_ticket_threadlink_never_saw_is_fetched_over_rest(sandbox: SandboxDeployment, channel: str) -> None:
    put_issue(sandbox, "OPS-7", "Payment provider timeouts", webhook=False)
    ts = sandbox.post(channel, "Could OPS-7 be related?")
    cards = wait_for(lambda: sandbox.cards(channel, ts), what="the card of a fetched ticket")
    assert "Payment provider timeouts" in cards[0]["text"]
    fetches = [r for r in sandbox.jira.requests if r.method == "GET" and r.path.endswith("/issue/OPS-7")]
    assert len(fetches) == 1


@pytest.mark.parametrize("problem", ["bad signature", "stale timestamp", "no signature"])
def test_unverified_webhook_is_401_and_nothing_reaches_kafka(
    sandbox: SandboxDeployment, channel: str, problem: str
) -> None:
    payload = {
        "token": "x",
        "team_id": sandbox.ident.team_id,
        "api_app_id": sandbox.ident.app_id,
        "type": "event_callback",
        "event_id": "Ev" + secrets.token_hex(5).upper(),
        "event_time": int(time.time()),
        "event": {
            "type": "message",
            "channel": channel,
            "user": "U0MALLORY",
            "text": "see SHOP-1",
            "ts": f"{time.time():.6f}",
            "channel_type": "channel",
        },
    }
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()) - (600 if problem == "stale timestamp" else 0))
    signature = sign(sandbox.ident.signing_secret, timestamp, body)
    if problem == "bad signature":
        signature = sign("not-the-secret", timestamp, body)
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp}
    if problem != "no signature":
        headers["X-Slack-Signature"] = signature
    response = httpx.post(sandbox.events_url, content=body, headers=headers, timeout=10)
    assert response.status_code == 401
    assert sandbox.ident.signing_secret not in response.text

    # The same request correctly signed does reach Kafka: the check above could have seen it.
    good_ts = str(int(time.time()))
    headers |= {
        "X-Slack-Request-Timestamp": good_ts,
        "X-Slack-Signature": sign(sandbox.ident.signing_secret, good_ts, body),
    }
    assert httpx.post(sandbox.events_url, content=body, headers=headers, timeout=10).status_code == 200
    events = social_events(sandbox, channel)
    assert [e.data.author.id for e in events] == ["U0MALLORY"]


def test_redelivered_event_gives_exactly_one_card(sandbox: SandboxDeployment, channel: str) -> None:
    put_issue(sandbox, "SHOP-2", "Invoices are sent twice")
    ts = sandbox.post(channel, "SHOP-2 is back")
    event_id = next(e["event_id"] for e in reversed(sandbox.slack.events) if e["event"].get("ts") == ts)
    wait_for(lambda: sandbox.cards(channel, ts), what="the first card")
    for retry in (1, 2, 3):
        assert sandbox.loop.run(sandbox.slack.redeliver(event_id, retry_num=retry)) == 200
    # Redeliveries are answered only after any publish was acknowledged: Kafka is final now.
    assert [e.id for e in social_events(sandbox, channel) if not e.data.author.is_threadlink] == [f"slack:{event_id}"]
    sentinel = beside("SHOP-2", "RDLV")
    put_issue(sandbox, sentinel, "Sentinel after the redeliveries")
    sentinel_card(sandbox, channel, ts, sentinel)
    cards = sandbox.cards(channel, ts)
    assert len([c for c in cards if with_key("SHOP-2")(c)]) == 1, cards
    assert len(cards) == 2


def test_threadlinks_own_message_causes_no_reply(sandbox: SandboxDeployment, channel: str) -> None:
    put_issue(sandbox, "SHOP-3", "Search is slow")
    # The person's ticket travels on SHOP-3's partition: had the bot's message asked for SHOP-3,
    # that request would be handled before this one.
    sentinel = beside("SHOP-3", "OWN")
    put_issue(sandbox, sentinel, "Images missing")
    # threadlink (the bot token) posts a message that mentions a ticket; Slack echoes it as an event.
    sandbox.loop.run(asyncio.to_thread(sandbox.slack.add_channel, channel))
    response = httpx.post(
        f"{sandbox.slack.url}/api/chat.postMessage",
        timeout=10,
        headers={"Authorization": f"Bearer {sandbox.ident.bot_token}"},
        data={"channel": channel, "text": "Reminder: SHOP-3 is open"},
    )
    assert response.json()["ok"], response.json()
    ts = response.json()["ts"]
    own = wait_for(lambda: social_events(sandbox, channel), what="the bot's own message on Kafka")
    assert own[0].data.author.is_threadlink

    # A person's message in the same thread is processed after it (same key, same partition).
    sentinel_card(sandbox, channel, ts, sentinel)
    texts = [c["text"] for c in sandbox.cards(channel, ts)]
    assert not any("Search is slow" in t for t in texts), texts
    kafka = sandbox.settings.kafka
    requests = envelopes(kafka.bootstrap_servers or "", kafka.topics.link_requests, LinkRequest)
    assert [r.data.record.key for r in requests if r.data.thread.channel == channel] == [sentinel]


def test_ticket_that_does_not_exist_gives_no_card_and_no_crash(sandbox: SandboxDeployment, channel: str) -> None:
    ts = sandbox.post(channel, "Is this NOPE-404?")
    kafka = sandbox.settings.kafka

    def missing() -> list[RecordMissing]:
        records = envelopes(kafka.bootstrap_servers or "", kafka.topics.records, RecordEvent)
        return [r.data for r in records if isinstance(r.data, RecordMissing) and r.data.ref.key == "NOPE-404"]

    wait_for(missing, what="Jira's answer that NOPE-404 does not exist")
    # A ticket threadlink never saw, on NOPE-404's partition: its card comes only once its
    # fetched record, behind NOPE-404's answer in the records topic, has been handled.
    sentinel = beside("NOPE-404", "FETCH")
    put_issue(sandbox, sentinel, "Password reset mails delayed", webhook=False)
    sentinel_card(sandbox, channel, ts, sentinel)
    cards = sandbox.cards(channel, ts)
    assert len(cards) == 1 and sentinel in cards[0]["text"], cards
    sandbox.children.check_alive()


def test_jira_webhook_with_a_bad_signature_is_401_and_changes_nothing(sandbox: SandboxDeployment) -> None:
    put_issue(sandbox, "SHOP-9", "Coupons rejected")
    payload = sandbox.jira.issue_event("jira:issue_updated", "SHOP-9")
    payload["issue"]["fields"]["summary"] = "forged"
    body, headers = sandbox.jira.signed(payload)
    headers["X-Hub-Signature"] = "sha256=" + "0" * 64
    assert httpx.post(sandbox.jira.webhook_url or "", content=body, headers=headers, timeout=10).status_code == 401
    kafka = sandbox.settings.kafka
    records = envelopes(kafka.bootstrap_servers or "", kafka.topics.records, RecordEvent)
    assert [r.data.title for r in records if r.data.ref.key == "SHOP-9"] == ["Coupons rejected"]


def test_both_processes_serve_prometheus_metrics(sandbox: SandboxDeployment, channel: str) -> None:
    put_issue(sandbox, "SHOP-6", "Metrics")
    ts = sandbox.post(channel, "SHOP-6 please")
    wait_for(lambda: sandbox.cards(channel, ts), what="a card")
    http = sandbox.settings.http
    expected = (
        'threadlink_connector_webhook_requests_total{connector="slack",outcome="accepted"}',
        # counted once the ledger has it, a moment after the card is visible
        'threadlink_sink_commands_total{connector="slack",kind="post_card",outcome="done"}',
    )
    wait_for(
        lambda: all(m in httpx.get(f"http://{http.host}:{http.port}/metrics", timeout=10).text for m in expected),
        what="the connectors' /metrics counting the webhook and the card",
    )
    # The card can be in the thread before the stream has counted it (it counts after sending
    # the link and the back-link too), so wait for the count.
    wait_for(
        lambda: (
            'threadlink_stream_links_total{outcome="carded"}'
            in httpx.get(f"http://127.0.0.1:{sandbox.settings.streams.web_port}/metrics", timeout=10).text
        ),
        what="the streams worker's /metrics counting the card",
    )


def test_input_that_breaks_the_contract_is_dead_lettered_and_the_flow_goes_on(
    sandbox: SandboxDeployment, channel: str
) -> None:
    kafka = sandbox.settings.kafka
    poison = b'{"specversion": "1.0", "type": "io.threadlink.social.message.posted", "data": {"text": "SHOP-1"}}'

    async def publish() -> None:
        publisher = KafkaPublisher(kafka.bootstrap_servers or "", client_id="tests")
        try:
            await publisher.publish_raw(kafka.topics.social_events, f"poison-{channel}", poison, [])
        finally:
            await asyncio.to_thread(publisher.close)

    sandbox.loop.run(publish())
    letters = wait_for(
        lambda: [
            e.data
            for e in envelopes(kafka.bootstrap_servers or "", kafka.topics.dead_letters, DeadLetter)
            if e.data.key == f"poison-{channel}"
        ],
        what="the poison message in the dead-letter topic",
    )
    assert letters[0].consumer == "streams.link.on_social" and letters[0].error_kind == "invalid"
    assert letters[0].original_value() == poison
    put_issue(sandbox, "SHOP-8", "After the poison")
    ts = sandbox.post(channel, "SHOP-8 still works?")
    wait_for(lambda: sandbox.cards(channel, ts), what="a card after the poison message")


def test_a_restricted_ticket_shows_only_in_a_private_channel(sandbox: SandboxDeployment) -> None:
    put_issue(sandbox, "SEC-1", "Leaked API key in build logs")
    sentinel = beside("SEC-1", "PUB")  # internal, on SEC-1's partition
    put_issue(sandbox, sentinel, "Build logs are slow")
    public, private = "C" + secrets.token_hex(4).upper(), "G" + secrets.token_hex(4).upper()
    in_public = sandbox.post(public, "Is SEC-1 fixed?")
    in_private = sandbox.post(private, "Is SEC-1 fixed?", channel_type="group")
    cards = wait_for(lambda: sandbox.cards(private, in_private), what="the card in the private channel")
    assert "Leaked API key" in cards[0]["text"]
    sentinel_card(sandbox, public, in_public, sentinel)  # behind the public SEC-1 mention
    cards = sandbox.cards(public, in_public)
    assert len(cards) == 1 and sentinel in cards[0]["text"], cards
    assert "Leaked API key" not in json.dumps(cards)
