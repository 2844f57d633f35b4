"""The sandbox demo `threadlink run` shows when there is no config file.

Everything is real except Slack and Jira, which are local stand-ins speaking their vendors'
wire formats (sandbox/slack_api.py, sandbox/jira_api.py): a real Kafka broker, the real
connectors behind their real webhook verification, and the real Faust streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox.contracts import SpecsMissing, spec_file
from sandbox.jira_api import FakeJira
from sandbox.post import write_endpoints
from sandbox.slack_api import FakeSlack
from threadlink.config import Settings
from threadlink.launcher import RUN_DIR, ChildProcesses, ensure_kafka, say, start_deployment


def free_port(preferred: int) -> int:
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SandboxIdentity:
    """Made up once per run directory (`load_or_create`): nothing here is a real credential,
    and printing it is fine: it lets you sign webhooks by hand."""

    signing_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    bot_token: str = field(default_factory=lambda: "xoxb-sandbox-" + secrets.token_hex(12))
    jira_email: str = "threadlink-bot@sandbox.invalid"
    jira_token: str = field(default_factory=lambda: secrets.token_hex(12))
    jira_webhook_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    team_id: str = "T0SANDBOX"
    bot_user_id: str = "U0THREADLINK"
    bot_id: str = "B0THREADLINK"
    app_id: str = "A0THREADLINK"
    channel: str = "C0SUPPORT"

    @classmethod
    def load_or_create(cls, path: Path) -> SandboxIdentity:
        """The same secrets on every run in one run directory (kept in `path`, mode 0600)."""
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            identity = cls()
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(asdict(identity), out, indent=2)
            return identity


def sandbox_settings(
    base: Settings, ident: SandboxIdentity, slack_url: str, jira_url: str, port: int, run_id: str
) -> Settings:
    return Settings(
        kafka=base.kafka.model_copy(update={"namespace": f"sandbox-{run_id}"}),
        http={"host": "127.0.0.1", "port": port},
        streams={"app_id": f"sandbox-{run_id}", "web_port": 0, "state_dir": str(RUN_DIR / "sandbox" / "streams")},
        connectors={
            "slack": {
                "signing_secret": ident.signing_secret,
                "bot_token": ident.bot_token,
                "api_base_url": f"{slack_url}/api",
                "bot_user_id": ident.bot_user_id,
                "bot_id": ident.bot_id,
                "app_id": ident.app_id,
            },
            "jira": {
                "base_url": jira_url,
                "email": ident.jira_email,
                "api_token": ident.jira_token,
                "webhook_secret": ident.jira_webhook_secret,
                # Security tickets only show in private channels (see the tests of that rule).
                "project_visibility": {"SEC": "restricted"},
                "requests_per_s": 200,  # the stand-in is local; Jira Cloud's own limits are the default
            },
        },
    )


def specs_available() -> bool:
    """The stand-ins check every request against the vendors' specs when they are at hand."""
    try:
        spec_file("slack/slack_web_openapi_v2.json")
        spec_file("jira/platform-swagger.v3.json")
    except SpecsMissing as exc:
        say(f"{exc}; the sandbox runs without contract checks")
        return False
    return True


def stand_ins(ident: SandboxIdentity, port: int, *, check_contracts: bool = True) -> tuple[FakeSlack, FakeJira]:
    """Slack and Jira stand-ins that deliver their webhooks to threadlink's server on `port`."""
    slack = FakeSlack(
        check_contracts=check_contracts,
        signing_secret=ident.signing_secret,
        bot_token=ident.bot_token,
        events_url=f"http://127.0.0.1:{port}/webhooks/slack/events",
        team_id=ident.team_id,
        bot_user_id=ident.bot_user_id,
        bot_id=ident.bot_id,
        app_id=ident.app_id,
    )
    jira = FakeJira(
        check_contracts=check_contracts,
        email=ident.jira_email,
        api_token=ident.jira_token,
        webhook_secret=ident.jira_webhook_secret,
        webhook_url=f"http://127.0.0.1:{port}/webhooks/jira",
    )
    return slack, jira


async def wait_for_reply(
    slack: FakeSlack, channel: str, ts: str, *, count: int = 1, timeout_s: float = 120
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replies = [m for m in slack.thread(channel, ts) if m.get("bot_id")]
        if len(replies) >= count:
            return slack.thread(channel, ts)
        await asyncio.sleep(0.25)
    raise TimeoutError(f"no card in the thread after {timeout_s:.0f}s; see {RUN_DIR}/sandbox/logs/")


def show_thread(messages: list[dict[str, Any]]) -> None:
    for message in messages:
        who = "threadlink" if message.get("bot_id") else message.get("user", "?")
        indent = "    " if message.get("thread_ts") and message.get("thread_ts") != message.get("ts") else ""
        print(f"  {indent}[{who}] {message.get('text', '')}")


async def run_demo(once: bool, keep_kafka: bool) -> int:
    # Only the local broker: the sandbox never touches a configured cluster.
    base, started_kafka = ensure_kafka(Settings(kafka={"bootstrap_servers": None}))
    ident = SandboxIdentity.load_or_create(RUN_DIR / "sandbox" / "identity.json")
    run_id = time.strftime("%Y%m%d%H%M%S")
    port = free_port(8787)
    slack, jira = stand_ins(ident, port, check_contracts=specs_available())
    children: ChildProcesses | None = None
    try:
        await jira.start()
        await slack.start()
        say(f"sandbox Slack at {slack.url}, sandbox Jira at {jira.url} (local stand-ins, not the real services)")
        settings = sandbox_settings(base, ident, slack.url, jira.url, port, run_id)
        children = await asyncio.to_thread(start_deployment, settings, RUN_DIR / "sandbox")
        started = time.monotonic()

        await jira.put_issue(
            "DEMO-1",
            "Checkout fails with HTTP 500 for EU customers",
            status="In Progress",
            assignee="Ada Lovelace",
            priority="High",
        )
        say("Jira: DEMO-1 created (its webhook told threadlink)")
        text = "Customers can't pay at checkout again. Is this DEMO-1?"
        ts = await slack.post_user_message(ident.channel, text, user="U0ALICE")
        say(f"Slack #{ident.channel}: U0ALICE wrote {text!r}; waiting for the card ...")
        thread = await wait_for_reply(slack, ident.channel, ts)
        say(f"the thread got its linked ticket in {time.monotonic() - started:.1f}s:")
        show_thread(thread)

        # A ticket threadlink has never heard of: fetched over Jira's REST API on first mention.
        webhook_url, jira.webhook_url = jira.webhook_url, None
        await jira.put_issue("OPS-7", "Payment provider timeouts", status="To Do", priority="Highest")
        jira.webhook_url = webhook_url
        started = time.monotonic()
        await slack.post_user_message(ident.channel, "Could OPS-7 be related?", user="U0BOB", thread_ts=ts)
        thread = await wait_for_reply(slack, ident.channel, ts, count=2)
        say(f"OPS-7 was fetched from Jira's REST API and carded in {time.monotonic() - started:.1f}s:")
        show_thread(thread)
        await asyncio.sleep(1)
        for key in ("DEMO-1", "OPS-7"):
            for comment in jira.comments(key):
                say(f"Jira {key} heard the thread back: {comment_text(comment)!r}")
        if once:
            return 0
        endpoints = write_endpoints(
            RUN_DIR / "sandbox", slack_url=slack.url, events_url=slack.events_url or "", channel=ident.channel
        )
        say(
            "running. Post your own message (the sandbox Slack signs and delivers it like Slack):\n"
            '  .venv/bin/threadlink sandbox post "Is DEMO-1 fixed?"\n'
            f"Or sign a webhook yourself: Slack's v0 signing secret is {ident.signing_secret}, the events URL\n"
            f"  {slack.events_url} (identity in {RUN_DIR / 'sandbox' / 'identity.json'}, endpoints in {endpoints}).\n"
            "Ctrl-C stops."
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            children.check_alive()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1)
        return 0
    except (TimeoutError, RuntimeError) as exc:
        say(f"the demo did not complete: {exc}")
        return 1
    finally:
        if children is not None:
            await asyncio.to_thread(children.stop)
        await slack.stop()
        await jira.stop()
        if started_kafka is not None and not keep_kafka:
            started_kafka.down(quiet=True)  # type: ignore[attr-defined]
            say("stopped the local Kafka broker it had started")


def comment_text(comment: dict[str, Any]) -> str:
    """Plain text of an Atlassian Document Format comment body."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "text":
                parts.append(node.get("text", ""))
            for child in node.get("content", []) or []:
                walk(child)

    walk(comment.get("body"))
    return "".join(parts) or str(comment.get("body"))
