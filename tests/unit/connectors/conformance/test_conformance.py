"""The conformance suite every connector passes (style.md, rule 9): webhook verification,
conforming and idempotent events, poison input refused as skippable, the sink's HTTP errors
mapped to the error taxonomy without leaking credentials, and a wire format the vendor's spec
allows. Each connector's own tests add only what is special to it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from connectors.base import ConnectorContext, Unauthorized, WebhookRequest
from connectors.errors import BackpressureError, ConnectorError, FatalError, RetriableError, SkippableError
from connectors.registry import PLUGINS, plugin_for
from sandbox.contracts import SpecsMissing
from schemas import events
from schemas.envelope import Envelope, utcnow
from schemas.ledger import LedgerEntry
from schemas.outcomes import Effect
from schemas.topics import TopicSpec, catalog
from tests.unit.connectors.recording import Published

from .harness import ConnectorHarness, Running
from .harnesses import HARNESSES

pytestmark = pytest.mark.unit

#: CloudEvents attributes (wire names) every published envelope carries, non-empty.
REQUIRED_ATTRIBUTES = ("id", "source", "type", "time", "sourcesystem")


def _kind(harness: ConnectorHarness) -> str:
    return harness.kind


def _per_harness(cases: Any) -> list[Any]:
    """(harness, case) parameters, for checks whose cases depend on the connector."""
    return [
        pytest.param(harness, case, id=f"{harness.kind}-{case}") for harness in HARNESSES for case in cases(harness)
    ]


@pytest.fixture(params=HARNESSES, ids=_kind)
def harness(request: pytest.FixtureRequest) -> ConnectorHarness:
    return request.param


@pytest.fixture
async def running(harness: ConnectorHarness) -> AsyncIterator[Running]:
    """The connector against its stand-in. Whatever the test did, every request the stand-in
    received must be one the vendor's published spec allows (check 8)."""
    try:
        async with harness.running() as connector:
            yield connector
            connector.stand_in.assert_no_violations()
    except SpecsMissing as exc:  # a clear failure, never a silent pass, without the vendor specs
        pytest.fail(str(exc), pytrace=False)


def topic_catalog(ctx: ConnectorContext) -> dict[str, TopicSpec]:
    return {spec.name: spec for spec in catalog(ctx.topics, [ctx.name])}


def assert_conforming(published: Published, ctx: ConnectorContext) -> None:
    """On a catalog topic, keyed by its subject, valid against the topic's value model after a
    trip over the wire, with the CloudEvents attributes set."""
    specs = topic_catalog(ctx)
    assert published.topic in specs, f"{published.topic!r} is not in the topic catalog"
    raw = published.envelope.to_bytes()
    decoded = specs[published.topic].value_model.model_validate_json(raw)
    wire = json.loads(raw)
    assert json.loads(decoded.to_bytes()) == wire, "the envelope changes on a round trip through its topic's model"
    missing = [name for name in REQUIRED_ATTRIBUTES if not isinstance(wire.get(name), str) or not wire[name]]
    assert not missing, f"CloudEvents attributes missing or empty: {missing}"
    assert wire["specversion"] == "1.0"
    assert wire["type"].startswith("io.threadlink."), wire["type"]
    assert datetime.fromisoformat(wire["time"]).tzinfo is not None, "time without a zone"
    assert wire["sourcesystem"] == ctx.name
    assert published.key and published.key == wire.get("subject"), "the Kafka key is not the envelope's subject"


def assert_no_secrets(error: BaseException, harness: ConnectorHarness) -> None:
    """Neither the error nor anything it was raised from names a credential."""
    seen: BaseException | None = error
    while seen is not None:
        for text in (str(seen), repr(seen)):
            leaked = [secret for secret in harness.secrets() if secret in text]
            assert not leaked, f"{type(seen).__name__} names a credential: {text!r}"
        seen = seen.__cause__ or seen.__context__


# -- 1. every connector is in the suite ---------------------------------------------------------


def test_every_registered_connector_has_a_harness() -> None:
    kinds = [harness.kind for harness in HARNESSES]
    assert len(kinds) == len(set(kinds)), f"two harnesses for one kind: {kinds}"
    assert set(kinds) == set(PLUGINS), (
        f"connectors without a harness: {sorted(set(PLUGINS) - set(kinds))}; "
        f"harnesses of no registered connector: {sorted(set(kinds) - set(PLUGINS))} "
        "(see tests/unit/connectors/conformance/README.md)"
    )
    for kind in kinds:
        plugin = plugin_for(kind)
        assert plugin is not None and plugin.kind == kind


# -- 2. verification ---------------------------------------------------------------------------


def _signature_cases(harness: ConnectorHarness) -> list[str]:
    return [
        "wrong-secret",
        *(f"missing-{header}" for header in harness.signature_headers),
        *(["tampered-body"] if harness.signs_body else []),
        "unsigned-garbage",
    ]


def _badly_signed(harness: ConnectorHarness, case: str, good: WebhookRequest) -> WebhookRequest:
    if case == "wrong-secret":
        return harness.with_bad_signature(good)
    if case.startswith("missing-"):
        return harness.without_header(good, case.removeprefix("missing-"))
    if case == "tampered-body":  # still valid JSON: only the signature can tell
        return WebhookRequest(headers=good.headers, body=good.body + b" ", query=good.query)
    # Verification comes before parsing: what cannot be parsed is still a 401, not a 400.
    return WebhookRequest(headers={}, body=b"\x00not a webhook")


@pytest.mark.parametrize(("harness", "case"), _per_harness(_signature_cases))
async def test_a_bad_or_missing_signature_is_unauthorized_and_publishes_nothing(
    harness: ConnectorHarness, case: str, running: Running
) -> None:
    request = _badly_signed(harness, case, await running.sample_webhook())

    with pytest.raises(Unauthorized) as caught:
        await running.deliver(request)

    assert running.publisher.attempts == 0
    assert_no_secrets(caught.value, harness)


# -- 3. events ---------------------------------------------------------------------------------


async def test_a_signed_webhook_publishes_conforming_envelopes(harness: ConnectorHarness, running: Running) -> None:
    response = await running.deliver(await running.sample_webhook())

    assert 200 <= response.status < 300
    assert running.publisher.published, "a webhook about something that happened published nothing"
    for published in running.publisher.published:
        assert_conforming(published, running.ctx)


# -- 4. idempotent redelivery ------------------------------------------------------------------


@pytest.mark.parametrize("receiver", ["same-instance", "restarted"])
async def test_a_redelivered_webhook_publishes_the_same_event_id_or_nothing(
    harness: ConnectorHarness, running: Running, receiver: str
) -> None:
    """Platforms redeliver; downstream deduplicates by envelope id. So a redelivery, to the
    same process or to one restarted in between (nothing remembered), publishes nothing new."""
    first = await running.sample_webhook()
    await running.deliver(first)
    first_ids = {p.envelope.id for p in running.publisher.published}
    assert first_ids

    if receiver == "same-instance":
        await running.deliver(harness.redelivery(first))
        again = running.publisher.published[len(first_ids) :]
    else:
        async with harness.connector(running.stand_in) as restarted:
            await restarted.deliver(harness.redelivery(first))
            again = restarted.publisher.published

    new_ids = {p.envelope.id for p in again} - first_ids
    assert not new_ids, f"the redelivery published events under new ids: {sorted(new_ids)}"
    for published in again:
        assert_conforming(published, running.ctx)


# -- 5. poison input ---------------------------------------------------------------------------


@pytest.mark.parametrize(("harness", "body"), _per_harness(lambda h: list(h.malformed_bodies())))
async def test_a_malformed_signed_body_is_skippable(harness: ConnectorHarness, body: str, running: Running) -> None:
    """The runtime answers SkippableError with 400 (the platform does not retry it), so the
    connector must not mistake poison for a passing failure (500: retried forever) or a bug."""
    request = harness.sign(harness.malformed_bodies()[body], headers={"Content-Type": "application/json"})

    with pytest.raises(SkippableError) as caught:
        await running.deliver(request)

    assert running.publisher.attempts == 0
    assert_no_secrets(caught.value, harness)  # the message goes back to the platform in the 400


# -- 6. the sink's HTTP errors -----------------------------------------------------------------


async def test_the_sample_command_takes_one_api_call_and_returns_a_ledger_result(
    harness: ConnectorHarness, running: Running
) -> None:
    """What makes the failure checks below mean something: the command the harness injects
    failures into is carried out with exactly that one call."""
    command = await running.sample_command()
    envelope = running.command_envelope(command)
    commands_topic = topic_catalog(running.ctx)[running.ctx.topics.commands(running.ctx.name)]
    commands_topic.value_model.model_validate_json(envelope.to_bytes())  # a command the runtime can read
    before = len(running.stand_in.requests)

    effect = await running.sink.execute(command, envelope)

    assert len(running.stand_in.requests) == before + 1
    assert isinstance(effect, Effect)
    entry = LedgerEntry(command_id=command.command_id, target=running.ctx.name, at=utcnow(), effect=effect)
    ledger = Envelope.wrap(entry, type=events.LEDGER_DONE, source_system=running.ctx.name)
    topic_catalog(running.ctx)[running.ctx.topics.ledger].value_model.model_validate_json(ledger.to_bytes())
    for published in running.publisher.published:
        assert_conforming(published, running.ctx)


FAILURES = [
    pytest.param(429, 7.0, BackpressureError, id="429-retry-after"),
    pytest.param(503, None, RetriableError, id="503"),
    pytest.param(503, 3.0, RetriableError, id="503-retry-after"),
    pytest.param(401, None, FatalError, id="401"),
    pytest.param(403, None, FatalError, id="403"),
]


@pytest.mark.parametrize(("status", "retry_after", "expected"), FAILURES)
async def test_api_errors_become_the_right_kind_of_error(
    harness: ConnectorHarness,
    running: Running,
    status: int,
    retry_after: float | None,
    expected: type[ConnectorError],
) -> None:
    """429 slows down for Retry-After, 5xx is retried, 401/403 go to the dead-letter topic. The
    sink itself tries once (the runtime's one policy retries), and after a retriable failure
    the runtime's next attempt carries the command out."""
    command = await running.sample_command()
    harness.fail_next_call(running.stand_in, status, retry_after=retry_after)
    before = len(running.stand_in.requests)

    with pytest.raises(ConnectorError) as caught:
        await running.execute(command)

    error = caught.value
    expected = harness.expected_error(status, expected)
    assert isinstance(error, expected), f"HTTP {status} raised {type(error).__name__}: {error}"
    assert error.status == status
    if isinstance(error, RetriableError):
        assert error.retry_after == retry_after, "Retry-After not honoured"
    assert len(running.stand_in.requests) == before + 1, "the sink retried by itself"
    assert_no_secrets(error, harness)
    assert running.publisher.attempts == 0

    if isinstance(error, RetriableError):
        await running.execute(command)


# -- 7. commands the sink does not do ----------------------------------------------------------


async def test_an_unsupported_command_is_skippable(harness: ConnectorHarness, running: Running) -> None:
    command = running.unsupported_command()
    before = len(running.stand_in.requests)

    with pytest.raises(SkippableError) as caught:
        await running.execute(command)

    assert len(running.stand_in.requests) == before, "an unsupported command reached the API"
    assert running.publisher.attempts == 0
    assert_no_secrets(caught.value, harness)


# -- 8. the wire format ------------------------------------------------------------------------


async def test_what_the_connector_sends_is_what_the_vendor_spec_allows(
    harness: ConnectorHarness, running: Running
) -> None:
    """Every test ends with this check (the `running` fixture); here it sees a whole round:
    startup calls, a webhook, a command, a refused call and its retry."""
    await running.deliver(await running.sample_webhook())
    command = await running.sample_command()
    harness.fail_next_call(running.stand_in, 429, retry_after=1)
    with pytest.raises(BackpressureError):
        await running.execute(command)
    await running.execute(command)

    assert running.stand_in.requests
    running.stand_in.assert_no_violations()
