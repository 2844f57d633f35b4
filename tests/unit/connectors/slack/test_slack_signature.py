from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from connectors.base import ConnectorContext, Unauthorized, WebhookRequest
from connectors.slack.mapping import SlackIdentity
from connectors.slack.source import SlackEventsSource, slack_signature, verify_signature

from .conftest import SIGNING_SECRET, make_config, signed_request

pytestmark = pytest.mark.unit

BODY = b'{"type":"event_callback"}'


@pytest.fixture
def source(ctx: ConnectorContext) -> SlackEventsSource:
    return SlackEventsSource(make_config(), ctx, SlackIdentity())


def test_slack_documented_example() -> None:
    # The worked example of https://api.slack.com/authentication/verifying-requests-from-slack
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert slack_signature("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body) == expected


def test_good_signature_passes(source: SlackEventsSource) -> None:
    source.verify(signed_request(BODY))


def test_header_names_are_case_insensitive_even_in_a_plain_dict(source: SlackEventsSource) -> None:
    request = signed_request(BODY)
    source.verify(WebhookRequest(headers={k.lower(): v for k, v in request.headers.items()}, body=BODY))


def now() -> int:
    return int(time.time())


@pytest.mark.parametrize(
    ("make_request", "reason"),
    [
        (lambda: signed_request(BODY, secret="some-other-secret"), "does not match"),
        (lambda: WebhookRequest(headers=signed_request(BODY).headers, body=BODY + b" "), "does not match"),
        (lambda: signed_request(BODY, timestamp=now() - 301), "replay"),
        (lambda: signed_request(BODY, timestamp=now() + 301), "replay"),
        (lambda: signed_request(BODY, headers={"X-Slack-Request-Timestamp": "yesterday"}), "not a number"),
        (
            lambda: WebhookRequest(headers={"X-Slack-Signature": "v0=00"}, body=BODY),
            "missing X-Slack-Request-Timestamp",
        ),
        (lambda: WebhookRequest(headers={"X-Slack-Request-Timestamp": str(now())}, body=BODY), "missing X-Slack-Sig"),
        (lambda: WebhookRequest(headers={}, body=BODY), "missing"),
    ],
    ids=["bad-signature", "tampered-body", "stale", "future", "non-numeric-ts", "no-ts", "no-signature", "no-headers"],
)
def test_bad_requests_are_unauthorized(
    source: SlackEventsSource, make_request: Callable[[], WebhookRequest], reason: str
) -> None:
    with pytest.raises(Unauthorized, match=reason) as caught:
        source.verify(make_request())
    assert SIGNING_SECRET not in str(caught.value)


def test_replay_window_follows_the_config() -> None:
    headers = {"X-Slack-Request-Timestamp": "1000", "X-Slack-Signature": slack_signature("s", "1000", BODY)}
    verify_signature("s", headers, BODY, max_age_s=60, now=1059)
    with pytest.raises(Unauthorized):
        verify_signature("s", headers, BODY, max_age_s=60, now=1061)
