"""WordPress as support staff see it: a real WordPress (tests/integration/wordpress_server.py),
the real broker, real connectors and streams processes, the Slack stand-in. A published post is
polled in and suggested for a question; a thread naming its permalink gets its card; a thread
marked resolved becomes one draft post in WordPress."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.wordpress.mapping import thread_tag
from schemas.social import ThreadRef
from tests.integration.kafka_helpers import wait_for
from tests.integration.sandbox_deployment import SandboxDeployment, start_sandbox, stop_sandbox
from threadlink.config import MentionPattern, Settings

from .wordpress_server import WordPress

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

NAME = "wordpress"
ID = r"(?P<id>[1-9][0-9]{0,19})"


@pytest.fixture(scope="module")
def deployment(
    wordpress: WordPress,
    kafka_bootstrap: str,
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
    vendor_specs: str,
) -> Iterator[tuple[SandboxDeployment, dict[str, Any]]]:
    article = wordpress.create(
        "posts",
        "Resetting your VPN token",
        "<p>When the VPN token expires, open the self-service portal and choose <em>Reset token</em>. "
        "The VPN client asks for the new token at the next connect.</p>",
    )
    host = re.escape(wordpress.url.split("//")[1])

    def with_wordpress(settings: Settings) -> Settings:
        connectors = {
            **settings.model_dump(mode="python")["connectors"],
            NAME: {
                "base_url": wordpress.url,
                "username": wordpress.admin,
                "app_password": wordpress.app_password,
                "since": datetime.now(UTC) - timedelta(minutes=5),
                "poll_interval_s": 1,
                "requests_per_s": 20,
            },
        }
        patterns = [
            *settings.streams.mention_patterns,
            MentionPattern(
                system=NAME, regex=rf"http://{host}/\?(?:p|page_id)=(?P<id>[1-9][0-9]{{0,19}})\b", key="{id}"
            ),
            MentionPattern(
                system=NAME, regex=rf"http://{host}/(?P<id>[1-9][0-9]{{0,19}})/(?![0-9]+/)[^/\s?#>|]+/", key="{id}"
            ),
        ]
        know = settings.streams.know.model_copy(update={"draft_target": NAME})
        streams = settings.streams.model_copy(update={"mention_patterns": patterns, "know": know})
        return Settings.model_validate(
            {**settings.model_dump(mode="python"), "connectors": connectors, "streams": streams.model_dump()}
        )

    run_dir: Path = tmp_path_factory.mktemp("wordpress-e2e")
    sandbox = start_sandbox(kafka_bootstrap, f"{namespace}-wpe2e", run_dir, customize=with_wordpress)
    try:
        yield sandbox, article
    finally:
        stop_sandbox(sandbox)
        sandbox.slack.assert_no_violations()


def texts(sandbox: SandboxDeployment, channel: str, ts: str) -> list[str]:
    return [m.get("text", "") for m in sandbox.thread(channel, ts)]


def test_a_polled_post_is_suggested_carded_and_a_resolved_thread_becomes_one_draft(
    deployment: tuple[SandboxDeployment, dict[str, Any]], wordpress: WordPress
) -> None:
    sandbox, article = deployment
    channel = "C" + secrets.token_hex(4).upper()
    root = sandbox.post(channel, "How do I reset my VPN token? It expired this morning")
    [suggestion] = wait_for(
        lambda: [t for t in texts(sandbox, channel, root) if "These articles may help" in t],
        timeout_s=120,
        what="the suggestion of the polled post",
    )
    assert "Resetting your VPN token" in suggestion and article["link"] in suggestion

    sandbox.post(channel, f"This one: {article['link']}", thread_ts=root, user="U0002")
    [card] = wait_for(
        lambda: [c for c in sandbox.cards(channel, root) if "Resetting your VPN token" in str(c)],
        timeout_s=120,
        what="the post's card",
    )
    assert article["link"] in str(card)

    sandbox.post(channel, "Reset it in the portal, works again", thread_ts=root, user="U0002")
    sandbox.loop.run(sandbox.slack.add_reaction(channel, root, "white_check_mark", user="U0003"))
    thread = ThreadRef(platform="slack", workspace=sandbox.ident.team_id, channel=channel, thread_id=root)
    slug = thread_tag(thread)

    def drafts() -> list[dict[str, Any]]:
        tags = wordpress.request("GET", f"/tags?slug={slug}")
        if not tags:
            return []
        return list(wordpress.request("GET", f"/posts?tags={tags[0]['id']}&status=draft&context=edit"))

    [draft] = wait_for(drafts, timeout_s=120, what="the resolved thread's draft post")
    assert draft["title"]["raw"].startswith("How do I reset my VPN token?")
    assert "Reset it in the portal, works again" in draft["content"]["raw"]
