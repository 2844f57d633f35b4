"""The WordPress connector against FakeWordPress (sandbox/wordpress_api.py): HTML to text,
visibility, config errors, the client's error classification, the poller's cursor and pages,
dead letters, and the sink's find-before-create. What a real WordPress does is tested in
tests/integration/test_wordpress.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.base import ConnectorContext, PollResult
from connectors.errors import AuthError, FatalError, SkippableError
from connectors.wordpress.config import WordPressConfig
from connectors.wordpress.connector import build
from connectors.wordpress.mapping import article_from_post, draft_content, html_to_text, thread_tag
from connectors.wordpress.sink import WordPressSink
from connectors.wordpress.source import WordPressPoller, read_cursor
from sandbox.wordpress_api import FakeWordPress
from schemas.commands import DraftArticle, FetchRecord
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope
from schemas.records import ArticleRecord, RecordMissing, RecordRef
from schemas.social import ThreadRef
from schemas.topics import TopicNames
from streams.mentions import MentionExtractor
from tests.unit.connectors.recording import RecordingPublisher
from threadlink.config import ConfigError, load_settings

pytestmark = pytest.mark.unit

USER, PASSWORD = "threadlink", "abcd EFGH ijkl MNOP qrst UVWX"
THREAD = ThreadRef(platform="slack", workspace="T1", channel="C1", thread_id="1700000000.000100")
BASE = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
DOC = Path(__file__).resolve().parents[4] / "docs" / "connectors" / "wordpress.md"


@pytest.fixture
async def fake() -> AsyncIterator[FakeWordPress]:
    wp = FakeWordPress(username=USER, app_password=PASSWORD)
    await wp.start()
    yield wp
    wp.assert_no_violations()
    await wp.stop()


def settings(fake: FakeWordPress | None = None, **extra: Any) -> WordPressConfig:
    base = fake.url if fake else "https://blog.example.com"
    return WordPressConfig.model_validate({"base_url": base, "username": USER, "app_password": PASSWORD, **extra})


def context(publisher: RecordingPublisher | None = None) -> ConnectorContext:
    return ConnectorContext(name="wp", topics=TopicNames(namespace="unit"), publisher=publisher or RecordingPublisher())


# -- mapping ------------------------------------------------------------------------------------


def test_html_becomes_plain_text_with_entities_decoded_blocks_on_lines_and_scripts_dropped() -> None:
    markup = (
        "<!-- wp:paragraph --><p>Restart the <strong>checkout</strong> pod &amp; wait&nbsp;5&#160;min.</p>"
        "<!-- /wp:paragraph -->\n<ul><li>kubectl rollout</li><li>check &lt;health&gt;</li></ul>"
        "<script>alert('x')</script><style>p{}</style><p>Done.<br>Really</p>"
    )
    assert html_to_text(markup) == (
        "Restart the checkout pod & wait 5 min.\n\nkubectl rollout\n\ncheck <health>\n\nDone.\nReally"
    )
    assert html_to_text("<p>" + "x" * 100 + "</p>", limit=10) == "x" * 9 + "…"
    assert html_to_text(None) == html_to_text("") == ""
    assert html_to_text("<p>unclosed <b>tags <i>everywhere") == "unclosed tags everywhere"
    assert html_to_text("<p>bell\x07 and\x00 nul\x1b[31m</p>") == "bell and nul[31m"


def _post(**fields: Any) -> dict[str, Any]:
    return {
        "id": 42,
        "modified_gmt": "2026-01-05T09:00:00",
        "status": "publish",
        "password": "",
        "link": "https://blog.example.com/42/checkout/",
        "title": {"rendered": "Checkout &#8212; runbook"},
        "content": {"rendered": "<p>Restart it.</p>", "protected": False},
        "excerpt": {"rendered": "<p>Restart &hellip;</p>"},
        "categories": [3],
        "tags": [5, 6],
        **fields,
    }


def test_a_post_maps_to_an_article_keyed_by_its_id_with_names_of_its_terms() -> None:
    terms = {3: "Runbooks", 5: "checkout", 6: thread_tag(THREAD)}
    record = article_from_post(_post(), system="wp", config=settings(), terms=terms)
    assert record.ref.id == "wp:42"
    assert (record.title, record.body, record.excerpt) == ("Checkout \u2014 runbook", "Restart it.", "Restart \u2026")
    assert (record.categories, record.tags) == (["Runbooks"], ["checkout"])  # the thread tag is left out
    assert (record.status, record.url, record.visibility) == (
        "publish",
        "https://blog.example.com/42/checkout/",
        "public",
    )
    assert record.version == int(datetime(2026, 1, 5, 9, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("fields", "visibility"),
    [
        ({}, "public"),
        ({"status": "draft"}, "internal"),
        ({"status": "pending"}, "internal"),
        ({"status": "future"}, "internal"),
        ({"status": "private"}, "internal"),
        ({"password": "s3cret"}, "internal"),
        ({"content": {"rendered": "", "protected": True}}, "internal"),
    ],
)
def test_only_published_posts_without_a_password_are_public(fields: dict[str, Any], visibility: str) -> None:
    assert article_from_post(_post(**fields), system="wp", config=settings()).visibility == visibility


def test_unpublished_visibility_may_be_narrowed_but_never_made_public() -> None:
    narrow = settings(unpublished_visibility="restricted", published_visibility="internal")
    assert article_from_post(_post(status="draft"), system="wp", config=narrow).visibility == "restricted"
    assert article_from_post(_post(), system="wp", config=narrow).visibility == "internal"
    with pytest.raises(ValueError, match="unpublished_visibility"):
        settings(unpublished_visibility="public")


def test_a_post_without_a_numeric_id_is_skippable_and_a_draft_without_a_link_gets_its_p_url() -> None:
    for bad in ({"id": "42"}, {"id": True}, {"id": 0}, {"id": None}):
        with pytest.raises(SkippableError, match="numeric id"):
            article_from_post(_post(**bad), system="wp", config=settings())
    draft = article_from_post(_post(link="javascript:alert(1)", title={}), system="wp", config=settings())
    assert (draft.url, draft.title) == ("https://blog.example.com/?p=42", "#42")


def test_draft_content_escapes_the_text_and_ends_with_the_thread_link() -> None:
    html = draft_content(
        "Restart <the> pod.\nThen wait.\n\nDone & dusted", permalink="https://acme.slack.com/p1?a=1&b=2"
    )
    assert html == (
        "<p>Restart &lt;the&gt; pod.<br>\nThen wait.</p>\n\n<p>Done &amp; dusted</p>\n\n"
        '<p>From the thread: <a href="https://acme.slack.com/p1?a=1&amp;b=2">https://acme.slack.com/p1?a=1&amp;b=2</a></p>'
    )
    assert "javascript" not in draft_content("x", permalink="javascript:alert(1)")
    assert thread_tag(THREAD) == thread_tag(THREAD.model_copy()) and re.fullmatch(
        r"threadlink-thread-[0-9a-f]{16}", thread_tag(THREAD)
    )


# -- config -------------------------------------------------------------------------------------


def test_config_mistakes_are_reported_all_at_once_with_their_location(tmp_path: Path) -> None:
    path = tmp_path / "threadlink.yaml"
    path.write_text(
        "connectors:\n  wordpress:\n    base_url: blog.acme.com\n    username: threadlink\n"
        "    app_password: hunter2-not-shown\n    types: [posts, posts, comments]\n    page_size: 500\n"
        "    polll_interval_s: 5\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "connectors.wordpress.base_url: must be an http(s) address" in message
    assert "connectors.wordpress.types.2: Input should be 'posts' or 'pages'" in message
    assert "connectors.wordpress.page_size: Input should be less than or equal to 100" in message
    assert "connectors.wordpress.polll_interval_s: unknown setting" in message
    assert "hunter2" not in message
    path.write_text("connectors:\n  wordpress:\n    base_url: https://blog.acme.com\n")
    with pytest.raises(ConfigError) as missing:
        load_settings(path)
    assert "connectors.wordpress.username: required setting is missing" in str(missing.value)
    assert "connectors.wordpress.app_password: required setting is missing" in str(missing.value)
    with pytest.raises(ValueError, match="each type may be listed once"):
        settings(types=["posts", "posts"])


def test_the_documented_config_loads_and_its_patterns_name_posts_by_id(tmp_path: Path) -> None:
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert block is not None, f"{DOC} has no yaml example"
    path = tmp_path / "threadlink.yaml"
    path.write_text(block.group(1) + "  jira:\n    base_url: https://acme.atlassian.net\n", encoding="utf-8")
    example = yaml.safe_load(block.group(1))
    config = WordPressConfig.model_validate({**example["connectors"]["wordpress"], "app_password": "x"})
    assert config.types == ["posts", "pages"] and config.rest_root == "https://blog.acme.com/wp-json"
    patterns = [(p["system"], p["regex"], p.get("key"), False) for p in example["streams"]["mention_patterns"]]
    found = MentionExtractor(patterns).extract(
        "OPS-7: see https://blog.acme.com/?p=42, https://blog.acme.com/index.php?page_id=43 and "
        "https://blog.acme.com/44/checkout-is-down/ or https://blog.acme.com/archives/45; "
        "not https://blog.acme.com/2026/01/slug/ nor https://evil.example/?p=46"
    )
    assert [ref.id for ref in found] == ["jira:OPS-7", "wordpress:42", "wordpress:43", "wordpress:44", "wordpress:45"]


# -- the poller -----------------------------------------------------------------------------------


async def poll_all(poller: WordPressPoller, cursor: Any, *, max_polls: int = 20) -> tuple[list[PollResult], Any]:
    """Polls while the result says `more` (bounded); the results and the last cursor."""
    results = []
    for _ in range(max_polls):
        result = await poller.poll(cursor)
        results.append(result)
        cursor = result.cursor
        if not result.more:
            return results, cursor
    raise AssertionError(f"still more after {max_polls} polls")


def published(results: list[PollResult]) -> list[Envelope[Any]]:
    return [envelope for result in results for _, _, envelope in result.events]


async def test_polling_pages_through_everything_once_and_an_edit_is_published_again(fake: FakeWordPress) -> None:
    for i in range(7):  # three of them in one second, more than a page
        fake.put_post(f"Post {i}", "<p>body</p>", modified=BASE + timedelta(seconds=min(i, 3)))
    draft = fake.put_post("Draft", status="draft", modified=BASE + timedelta(seconds=10))
    fake.put_post("About", kind="page", modified=BASE)
    poller = WordPressPoller(settings(fake, since=BASE, page_size=2, max_pages_per_poll=2), context(), kind="posts")
    try:
        results, cursor = await poll_all(poller, poller.initial_cursor)
        titles = [e.data.title for e in published(results)]
        assert sorted(titles) == sorted([f"Post {i}" for i in range(7)] + ["Draft"])  # no page: other poller
        assert len(results) > 1, "a backlog takes more than one poll"
        assert [e.visibility for e in published(results) if e.data.title == "Draft"] == ["internal"]
        assert cursor["since"] == "2026-01-05T09:00:10" and cursor["seen"] == {str(draft["id"]): cursor["since"]}

        again, cursor = await poll_all(poller, cursor)
        assert published(again) == []
        fake.touch(1, BASE + timedelta(seconds=20), title={"rendered": "Post 0, edited"})
        edited, cursor = await poll_all(poller, cursor)
        assert [e.data.title for e in published(edited)] == ["Post 0, edited"]
        assert published(edited)[0].id == "wp:post:1:2026-01-05T09:00:20"
    finally:
        await poller.stop()


async def test_a_trashed_post_is_missing_and_a_hostile_one_is_a_dead_letter_while_the_rest_goes_on(
    fake: FakeWordPress,
) -> None:
    fake.put_post("Fine", modified=BASE)
    fake.put_post("Gone", status="trash", modified=BASE + timedelta(seconds=1))
    fake.put_post("Evil", modified=BASE + timedelta(seconds=2), id="1; DROP TABLE")
    fake.put_post("Huge title", modified=BASE + timedelta(seconds=3), excerpt=["not", "an", "object"])
    fake.put_post("No time", modified=BASE + timedelta(seconds=4))["modified_gmt"] = "yesterday"
    poller = WordPressPoller(settings(fake, since=BASE), context(), kind="posts")
    try:
        results, cursor = await poll_all(poller, poller.initial_cursor)
    finally:
        await poller.stop()
    by_topic: dict[str, list[Any]] = {}
    for topic, _, envelope in results[0].events:
        by_topic.setdefault(topic, []).append(envelope.data)
    records = by_topic[TopicNames(namespace="unit").records]
    assert [(type(r).__name__, r.ref.key) for r in records] == [
        ("ArticleRecord", "1"),
        ("RecordMissing", "2"),
        ("ArticleRecord", "4"),  # an excerpt of the wrong shape is just no excerpt
    ]
    assert isinstance(records[1], RecordMissing) and records[1].reason == "trashed"
    letters = by_topic[TopicNames(namespace="unit").dead_letters]
    assert [type(letter) for letter in letters] == [DeadLetter, DeadLetter]
    assert "numeric id" in letters[0].reason and "modified_gmt" in letters[1].reason
    assert cursor["since"] == "2026-01-05T09:00:03"
    # Listed again at every poll (its time cannot go behind the cursor): dead-lettered once.
    poller = WordPressPoller(settings(fake, since=BASE), context(), kind="posts")
    try:
        again, _ = await poll_all(poller, cursor)
    finally:
        await poller.stop()
    assert published(again) == []


async def test_a_first_poll_without_since_starts_now_and_odd_cursors_are_read_safely(fake: FakeWordPress) -> None:
    fake.put_post("Old", modified=BASE)
    poller = WordPressPoller(settings(fake), context(), kind="posts")
    try:
        first = await poller.poll(None)
        assert first.events == [] and read_cursor(first.cursor)[0] is not None
    finally:
        await poller.stop()
    assert read_cursor({"since": "garbage"}) == (None, {})
    assert read_cursor({"since": "2026-01-05T09:00:00", "seen": []}) == ("2026-01-05T09:00:00", {})


async def test_a_wrong_password_taken_for_an_anonymous_visitor_is_an_auth_error_without_the_password(
    fake: FakeWordPress,
) -> None:
    fake.put_post("Public", modified=BASE)
    poller = WordPressPoller(settings(fake, since=BASE, app_password="wrong-one"), context(), kind="posts")
    try:
        with pytest.raises(AuthError, match="check username and app_password") as caught:
            await poller.poll(poller.initial_cursor)
    finally:
        await poller.stop()
    assert "wrong-one" not in str(caught.value) and PASSWORD not in str(caught.value)


async def test_an_answer_that_is_not_wordpress_is_a_clear_fatal_error(fake: FakeWordPress) -> None:
    poller = WordPressPoller(settings(fake, since=BASE), context(), kind="posts")
    fake.fail_next(200, path_prefix="/wp-json/wp/v2/posts", body={"html": "<h1>Login</h1>"})
    try:
        with pytest.raises(FatalError, match="not a JSON list; is base_url"):
            await poller.poll(poller.initial_cursor)
    finally:
        await poller.stop()


# -- the sink -----------------------------------------------------------------------------------


def envelope_of(command: Any) -> Envelope[Any]:
    return Envelope.wrap(command, type=f"io.threadlink.command.{command.kind}", source_system="streams")


async def test_a_thread_gets_one_draft_however_often_it_is_asked_for(fake: FakeWordPress) -> None:
    sink = WordPressSink(settings(fake, draft_category=1), context())
    draft = DraftArticle(
        command_id="d1",
        target="wp",
        reply_key=THREAD.id,
        thread=THREAD,
        title="Checkout is down: restart the pod",
        body="Restart it.\n\nThen check <health>.",
        permalink="https://acme.slack.com/archives/C1/p1",
    )
    try:
        made = await sink.execute(draft, envelope_of(draft))
        again = await sink.execute(draft.model_copy(update={"command_id": "d2"}), envelope_of(draft))
        other = await sink.execute(
            draft.model_copy(update={"command_id": "d3", "thread": THREAD.model_copy(update={"thread_id": "2"})}),
            envelope_of(draft),
        )
    finally:
        await sink.stop()
    assert made.created == again.created == RecordRef(system="wp", key=str(made.created.key if made.created else ""))
    assert (made.recovered, again.recovered) == (False, True)
    assert other.created != made.created
    posts = [p for p in fake.posts.values() if p["type"] == "post"]
    assert len(posts) == 2 and {p["status"] for p in posts} == {"draft"}
    first = fake.posts[int(made.created.key)]  # type: ignore[union-attr]
    assert "Then check &lt;health&gt;." in first["content"]["rendered"] and first["categories"] == [1]
    assert made.url == f"{fake.url}/?p={made.created.key}"  # type: ignore[union-attr]


async def test_fetch_publishes_the_post_or_page_or_that_it_is_missing(fake: FakeWordPress) -> None:
    tag = fake.put_term("tags", "checkout")
    post = fake.put_post("Runbook", "<p>Do it</p>", status="private", tags=[tag])
    page = fake.put_post("About", kind="page")
    publisher = RecordingPublisher()
    sink = build(settings(fake), context(publisher)).sink
    assert isinstance(sink, WordPressSink)
    try:
        effects = [
            await sink.execute(fetch, envelope_of(fetch))
            for fetch in (
                FetchRecord(command_id=f"f{key}", target="wp", record=RecordRef(system="wp", key=key))
                for key in (str(post["id"]), str(page["id"]), "999", "not-a-number")
            )
        ]
        with pytest.raises(SkippableError, match="belongs to 'jira'"):
            fetch = FetchRecord(command_id="fx", target="wp", record=RecordRef(system="jira", key="1"))
            await sink.execute(fetch, envelope_of(fetch))
    finally:
        await sink.stop()
    assert [e.found for e in effects] == [True, True, False, False]
    data = [p.envelope.data for p in publisher.published]
    assert isinstance(data[0], ArticleRecord) and (data[0].tags, data[0].visibility) == (["checkout"], "internal")
    assert isinstance(data[1], ArticleRecord) and data[1].title == "About"
    assert [type(d).__name__ for d in data[2:]] == ["RecordMissing", "RecordMissing"]
    assert [p.key for p in publisher.published] == [f"wp:{post['id']}", f"wp:{page['id']}", "wp:999", "wp:not-a-number"]


async def test_the_sink_refuses_a_wrong_password_as_an_auth_error(fake: FakeWordPress) -> None:
    post = fake.put_post("Public")
    sink = WordPressSink(settings(fake, app_password="wrong-one"), context())
    fetch = FetchRecord(command_id="f1", target="wp", record=RecordRef(system="wp", key=str(post["id"])))
    draft = DraftArticle(command_id="d1", target="wp", thread=THREAD, title="T")
    try:
        with pytest.raises(AuthError):
            await sink.execute(fetch, envelope_of(fetch))
        with pytest.raises(AuthError):
            await sink.execute(draft, envelope_of(draft))
    finally:
        await sink.stop()


def test_know_drafts_only_to_a_configured_connector(tmp_path: Path) -> None:
    path = tmp_path / "threadlink.yaml"
    entry = "connectors:\n  wordpress:\n    base_url: https://blog.acme.com\n    username: u\n    app_password: p\n"
    path.write_text(entry + "streams:\n  know:\n    draft_target: wordpres\n")
    with pytest.raises(ConfigError, match=r"streams.know.draft_target: 'wordpres' is not a configured connector"):
        load_settings(path)
    path.write_text(entry + "streams:\n  mention_patterns: []\n  know:\n    draft_target: wordpress\n")
    assert load_settings(path).streams.know.draft_target == "wordpress"


async def test_a_taxonomy_the_site_will_not_list_leaves_names_out_not_the_post(fake: FakeWordPress) -> None:
    tag = fake.put_term("tags", "checkout")
    fake.put_post("Runbook", modified=BASE, tags=[tag])
    fake.fail_next(404, path_prefix="/wp-json/wp/v2/tags", body={"code": "rest_no_route", "message": "x"})
    poller = WordPressPoller(settings(fake, since=BASE), context(), kind="posts")
    try:
        result = await poller.poll(poller.initial_cursor)
    finally:
        await poller.stop()
    [(_, _, envelope)] = result.events
    assert isinstance(envelope.data, ArticleRecord)
    assert (envelope.data.title, envelope.data.categories, envelope.data.tags) == ("Runbook", ["Uncategorized"], [])
