"""The WordPress connector against a real WordPress 6.1 (tests/integration/wordpress_server.py) and
the real broker: polling posts and pages with checkpoints in Kafka across a restart, visibility,
pages of results, a thread's one draft, look-ups by the links a thread names, a wrong password
and answers that are not WordPress's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from connectors.base import ConnectorContext
from connectors.errors import AuthError, FatalError
from connectors.runtime.pollers import PollerGroup
from connectors.wordpress.config import WordPressConfig
from connectors.wordpress.connector import build
from connectors.wordpress.mapping import thread_tag
from connectors.wordpress.source import WordPressPoller
from schemas.commands import DraftArticle, FetchRecord
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope
from schemas.records import MAX_BODY, ArticleRecord, RecordEvent, RecordMissing, RecordRef
from schemas.social import ThreadRef
from schemas.topics import TopicNames
from streams.mentions import MentionExtractor
from tests.unit.connectors.recording import RecordingPublisher
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics

from .kafka_helpers import envelopes
from .wordpress_server import WordPress

pytestmark = pytest.mark.integration

NAME = "wordpress"
THREAD = ThreadRef(platform="slack", workspace="T1", channel="C1", thread_id="1700000000.000100")
DOC = Path(__file__).resolve().parents[2] / "docs" / "connectors" / "wordpress.md"


@pytest.fixture
def topics(kafka_bootstrap: str, namespace: str, request: pytest.FixtureRequest) -> TopicNames:
    settings = Settings(
        kafka={
            "bootstrap_servers": kafka_bootstrap,
            "namespace": f"{namespace}-wp-{request.node.name[-12:].lower().replace('_', '-')}",
        }
    )
    apply_topics(settings)
    return settings.kafka.topics


def config(wordpress: WordPress, **extra: Any) -> WordPressConfig:
    return WordPressConfig.model_validate(
        {"base_url": wordpress.url, "username": wordpress.admin, "app_password": wordpress.app_password, **extra}
    )


def ctx(topics: TopicNames, publisher: Any = None) -> ConnectorContext:
    return ConnectorContext(name=NAME, topics=topics, publisher=publisher or RecordingPublisher())


def envelope_of(command: Any) -> Envelope[Any]:
    return Envelope.wrap(command, type=f"io.threadlink.command.{command.kind}", source_system="streams")


async def until(predicate: Any, timeout_s: float = 90) -> None:
    """Until `predicate()` holds; it reads Kafka, so it runs in a thread, off the loop."""
    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(predicate):
            await asyncio.sleep(0.3)


def records(bootstrap: str, topics: TopicNames) -> list[Envelope[Any]]:
    return envelopes(bootstrap, topics.records, RecordEvent)


async def poll_until(kafka_bootstrap: str, topics: TopicNames, pollers: list[WordPressPoller], done: Any) -> None:
    """Runs the pollers in a PollerGroup (checkpoints in Kafka) until `done()`, then until each
    has polled 3 more times (a duplicate would show by then)."""
    polls = Counter[str]()
    for poller in pollers:
        original = poller.poll

        async def counted(cursor: Any, *, _original: Any = original, _name: str = poller.name) -> Any:
            polls[_name] += 1
            return await _original(cursor)

        poller.poll = counted  # type: ignore[method-assign]
    group = PollerGroup(kafka_bootstrap, topics, [(NAME, p) for p in pollers])
    await group.start()
    task = asyncio.create_task(group.run())
    try:
        await until(done)
        settled = dict(polls)
        async with asyncio.timeout(60):
            while any(polls[p.name] < settled.get(p.name, 0) + 3 for p in pollers):
                await asyncio.sleep(0.2)
    finally:
        group.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)


async def test_polling_publishes_posts_and_pages_once_with_visibility_over_pages_and_resumes_after_a_restart(
    wordpress: WordPress, kafka_bootstrap: str, topics: TopicNames
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=2)
    category = wordpress.request("POST", "/categories", {"name": f"Runbooks {since.timestamp():.0f}"})["id"]
    tag = wordpress.request("POST", "/tags", {"name": f"checkout-{since.timestamp():.0f}"})["id"]
    runbook = wordpress.create(
        "posts",
        "Checkout &amp; payments runbook",
        "<!-- wp:paragraph --><p>Restart the <strong>checkout</strong> pod.</p><!-- /wp:paragraph -->"
        "<ul><li>kubectl rollout restart</li></ul><script>alert(1)</script>",
        categories=[category],
        tags=[tag],
    )
    draft = wordpress.create("posts", "Unfinished postmortem", "<p>tbd</p>", status="draft")
    private = wordpress.create("posts", "Staff only", "<p>secret</p>", status="private")
    protected = wordpress.create("posts", "Partners", "<p>for partners</p>", password="hunter2")
    page = wordpress.create("pages", "About the shop", "<p>We sell things.</p>")
    more = [wordpress.create("posts", f"Bulk {i}", f"<p>{i}</p>") for i in range(4)]
    mine = {str(p["id"]) for p in (runbook, draft, private, protected, page, *more)}
    settings = config(wordpress, since=since, poll_interval_s=1, page_size=2, max_pages_per_poll=2)

    def ours() -> list[Envelope[Any]]:
        return [e for e in records(kafka_bootstrap, topics) if e.data.ref.key in mine]

    pollers = [WordPressPoller(settings, ctx(topics), kind=kind) for kind in ("posts", "pages")]
    await poll_until(kafka_bootstrap, topics, pollers, lambda: {e.data.ref.key for e in ours()} == mine)
    first = ours()
    assert len(first) == len(mine), "later polls (and pages) must publish nothing twice"
    by_key = {e.data.ref.key: e for e in first}
    record = by_key[str(runbook["id"])].data
    assert isinstance(record, ArticleRecord)
    assert (record.title, record.status) == ("Checkout & payments runbook", "publish")
    assert record.body == "Restart the checkout pod.\n\nkubectl rollout restart"
    assert record.categories == [f"Runbooks {since.timestamp():.0f}"]
    assert record.tags == [f"checkout-{since.timestamp():.0f}"]
    assert record.url == runbook["link"] and re.search(rf"/{runbook['id']}/[^/]+/$", record.url)
    visibility = {key: e.visibility for key, e in by_key.items()}
    assert visibility[str(runbook["id"])] == visibility[str(page["id"])] == "public"
    assert (
        visibility[str(draft["id"])] == visibility[str(private["id"])] == visibility[str(protected["id"])] == "internal"
    )
    assert by_key[str(page["id"])].data.body == "We sell things."

    # New processes resume at the checkpoints: only what changed since is published.
    wordpress.request("POST", f"/posts/{draft['id']}", {"title": "Postmortem: checkout outage", "status": "publish"})
    added = wordpress.create("posts", "Search is slow")
    wordpress.request("DELETE", f"/posts/{more[0]['id']}")  # to the trash
    mine.add(str(added["id"]))
    restarted = [WordPressPoller(settings, ctx(topics), kind=kind) for kind in ("posts", "pages")]

    def caught_up() -> bool:
        keys = [e.data.ref.key for e in ours()]
        return keys.count(str(draft["id"])) == 2 and str(added["id"]) in keys and keys.count(str(more[0]["id"])) == 2

    await poll_until(kafka_bootstrap, topics, restarted, caught_up)
    after = Counter(e.data.ref.key for e in ours())
    changed = {str(draft["id"]), str(added["id"]), str(more[0]["id"])}
    assert after == Counter({key: 1 for key in mine} | {str(draft["id"]): 2, str(more[0]["id"]): 2})
    assert all(after[key] == 1 for key in mine - changed), "an unchanged post was published again after the restart"
    latest = {e.data.ref.key: e for e in ours()}
    assert (latest[str(draft["id"])].data.title, latest[str(draft["id"])].visibility) == (
        "Postmortem: checkout outage",
        "public",
    )
    assert isinstance(latest[str(more[0]["id"])].data, RecordMissing)


async def test_a_thread_gets_one_draft_and_the_links_a_thread_names_find_the_polled_record(
    wordpress: WordPress, topics: TopicNames
) -> None:
    publisher = RecordingPublisher()
    sink = build(config(wordpress), ctx(topics, publisher)).sink
    assert sink is not None
    thread = THREAD.model_copy(update={"thread_id": f"{datetime.now(UTC).timestamp():.6f}"})
    draft = DraftArticle(
        command_id="d1",
        target=NAME,
        reply_key=thread.id,
        thread=thread,
        title="Checkout is down: restart the pod",
        body="Restart the pod.\n\nThen check <health>.",
        permalink="https://acme.slack.com/archives/C1/p1700000000000100",
    )
    try:
        made = await sink.execute(draft, envelope_of(draft))
        again = await sink.execute(draft.model_copy(update={"command_id": "d2"}), envelope_of(draft))
        assert made.created is not None and again.created == made.created
        assert (made.recovered, again.recovered) == (False, True)
        tag = wordpress.request("GET", f"/tags?slug={thread_tag(thread)}")
        tagged = wordpress.request("GET", f"/posts?tags={tag[0]['id']}&status=draft,publish,private,pending,future")
        assert [p["id"] for p in tagged] == [int(made.created.key)]
        post = wordpress.request("GET", f"/posts/{made.created.key}?context=edit")
        assert post["status"] == "draft" and "Then check &lt;health&gt;." in post["content"]["raw"]
        assert "https://acme.slack.com/archives/C1/p1700000000000100" in post["content"]["raw"]

        # A published post, named in a thread by its permalink and by ?p=: both are its record.
        published = wordpress.create("posts", "Checkout runbook", "<p>Restart it.</p>")
        block = re.search(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
        assert block is not None
        patterns = [
            (p["system"], p["regex"].replace(r"blog\.acme\.com", re.escape(wordpress.url.split("//")[1])), p.get("key"))
            for p in yaml.safe_load(block.group(1))["streams"]["mention_patterns"]
            if p["system"] == NAME
        ]
        text = f"see {published['link']} (or {wordpress.url}/?p={published['id']}) and {wordpress.url}/?p=999999"
        mentioned = MentionExtractor([(s, r, k, False) for s, r, k in patterns]).extract(text)
        assert [ref.id for ref in mentioned] == [f"{NAME}:{published['id']}", f"{NAME}:999999"]
        effects = [
            await sink.execute(fetch, envelope_of(fetch))
            for fetch in (FetchRecord(command_id=f"f{i}", target=NAME, record=ref) for i, ref in enumerate(mentioned))
        ]
        assert [e.found for e in effects] == [True, False]
        found, missing = (p.envelope.data for p in publisher.published)
        assert isinstance(found, ArticleRecord) and found.ref == RecordRef(system=NAME, key=str(published["id"]))
        assert (found.title, found.body, found.url, found.visibility) == (
            "Checkout runbook",
            "Restart it.",
            published["link"],
            "public",
        )
        assert isinstance(missing, RecordMissing)
    finally:
        await sink.stop()


async def test_a_wrong_application_password_and_an_address_that_is_not_the_api_are_clear_errors(
    wordpress: WordPress, topics: TopicNames
) -> None:
    wrong = config(wordpress, app_password="abcd efgh ijkl mnop qrst uvwx", since=datetime.now(UTC))
    poller = WordPressPoller(wrong, ctx(topics), kind="posts")
    sink = build(wrong, ctx(topics)).sink
    assert sink is not None
    fetch = FetchRecord(command_id="f1", target=NAME, record=RecordRef(system=NAME, key="1"))
    try:
        with pytest.raises(AuthError, match="check username and app_password") as polled:
            await poller.poll(poller.initial_cursor)
        with pytest.raises(AuthError) as fetched:
            await sink.execute(fetch, envelope_of(fetch))
        draft = DraftArticle(command_id="d1", target=NAME, thread=THREAD, title="T")
        with pytest.raises(AuthError):
            await sink.execute(draft, envelope_of(draft))
    finally:
        await poller.stop()
        await sink.stop()
    for error in (polled.value, fetched.value):
        assert "abcd" not in str(error) and wordpress.app_password not in str(error)

    # A REST root that is the admin area: WordPress answers with a redirect to its login page.
    elsewhere = config(wordpress, api_root=f"{wordpress.url}/wp-admin", since=datetime.now(UTC))
    lost = WordPressPoller(elsewhere, ctx(topics), kind="posts")
    try:
        with pytest.raises(FatalError, match=r"is base_url \(or api_root\) a WordPress site"):
            await lost.poll(lost.initial_cursor)
    finally:
        await lost.stop()


class CorruptingProxy:
    """Forwards every call to the real WordPress, but in post listings replaces what a hostile
    or broken site could send: the post titled `corrupt` gets a non-numeric id, and one item of
    the list is not an object at all. Everything else is WordPress's own answer."""

    def __init__(self, upstream: str, corrupt: str) -> None:
        self.upstream, self.corrupt = upstream, corrupt
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "accept")}
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.request(
                request.method, f"{self.upstream}{request.rel_url}", headers=headers, content=await request.read()
            )
        body = answer.content
        if request.path == "/wp-json/wp/v2/posts" and answer.status_code == 200:
            posts = answer.json()
            for post in posts:
                if post["title"]["raw"] == self.corrupt:
                    post["id"] = f"{post['id']}; DROP TABLE wp_posts"
            body = json.dumps([*posts, "not a post"] if posts else posts).encode()
        return web.Response(body=body, status=answer.status_code, content_type="application/json")


async def test_a_hostile_listing_dead_letters_what_it_cannot_map_and_publishes_the_rest_once(
    wordpress: WordPress, kafka_bootstrap: str, topics: TopicNames
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=2)
    nested = "<div>" * 3000 + "deep" + "</div>" * 3000
    hostile = wordpress.create("posts", "Hostile <script>alert(1)</script>", nested + "&amp;amp; \x07" + "x" * 40_000)
    corrupt = wordpress.create("posts", "Corrupt me")
    fine = wordpress.create("posts", "Fine")
    proxy = CorruptingProxy(wordpress.url, "Corrupt me")
    await proxy.start()
    settings = config(wordpress, base_url=proxy.url, since=since, poll_interval_s=1)
    keys = {str(hostile["id"]), str(fine["id"])}

    def letters() -> list[Envelope[Any]]:
        return envelopes(kafka_bootstrap, topics.dead_letters, DeadLetter)

    def done() -> bool:
        published = {e.data.ref.key for e in records(kafka_bootstrap, topics)}
        return keys <= published and len(letters()) >= 2

    try:
        await poll_until(kafka_bootstrap, topics, [WordPressPoller(settings, ctx(topics), kind="posts")], done)
    finally:
        await proxy.stop()
    published = Counter(e.data.ref.key for e in records(kafka_bootstrap, topics))
    assert published[str(hostile["id"])] == published[str(fine["id"])] == 1
    assert str(corrupt["id"]) not in published
    reasons = sorted(letter.data.reason for letter in letters())
    assert reasons == ["posts: no modified_gmt time", "posts: wordpress post without a positive numeric id"], (
        "each bad item once: the cursor moved past them"
    )
    article = next(e.data for e in records(kafka_bootstrap, topics) if e.data.ref.key == str(hostile["id"]))
    assert article.title == "Hostile"  # a script in the title is dropped, not kept as text to run
    assert article.body.startswith("deep\n\n&amp; xxx") and len(article.body) <= MAX_BODY  # no control character
