"""A whole threadlink deployment for end-to-end tests: the real broker, `threadlink
connectors run` and `threadlink streams run` as real child processes, and the sandbox
Slack and Jira (served from a background event loop, so tests can stay synchronous)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sandbox.demo import SandboxIdentity, free_port, sandbox_settings, stand_ins
from sandbox.jira_api import FakeJira
from sandbox.slack_api import FakeSlack
from threadlink.config import ConnectorEntry, EscalateSettings, ReachSettings, Settings
from threadlink.launcher import ChildProcesses, start_deployment

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="sandbox-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@dataclass
class SandboxDeployment:
    loop: LoopThread
    slack: FakeSlack
    jira: FakeJira
    ident: SandboxIdentity
    settings: Settings
    children: ChildProcesses
    events_url: str

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            return self.slack.thread(channel, ts)

        return self.loop.run(read())

    def cards(self, channel: str, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.thread(channel, ts) if m.get("bot_id")]

    def post(self, channel: str, text: str, **kwargs: Any) -> str:
        return self.loop.run(self.slack.post_user_message(channel, text, **kwargs))


def start_sandbox(
    kafka_bootstrap: str,
    namespace: str,
    run_dir: Path,
    *,
    escalate: dict[str, Any] | None = None,
    reach: dict[str, Any] | None = None,
    customize: Callable[[Settings], Settings] | None = None,
    loop: LoopThread | None = None,
    port: int | None = None,
    connectors: dict[str, dict[str, Any]] | None = None,
) -> SandboxDeployment:
    """`escalate`, `reach`: streams.escalate and streams.reach settings (off by default, as in
    the sandbox demo). `customize`: changes the settings before the processes start (another
    connector, more mention patterns), with `loop` the thread its stand-ins are served from.
    `port`: where the connectors serve webhooks (a homeserver's registration names a fixed one);
    `connectors`: more connector entries next to the sandbox's Slack and Jira (e.g. Matrix)."""
    loop = loop or LoopThread()
    ident = SandboxIdentity()
    port = port or free_port(18787)
    slack, jira = stand_ins(ident, port)
    loop.run(slack.start())
    loop.run(jira.start())
    base = Settings(kafka={"bootstrap_servers": kafka_bootstrap})
    settings = sandbox_settings(base, ident, slack.url, jira.url, port, namespace)
    for name, entry in (connectors or {}).items():
        settings.connectors[name] = ConnectorEntry.model_validate(entry)
    settings = settings.model_copy(
        update={
            "streams": settings.streams.model_copy(
                update={
                    "state_dir": str(run_dir / "streams"),
                    "web_port": free_port(16066),
                    **({"escalate": EscalateSettings(**escalate)} if escalate else {}),
                    **({"reach": ReachSettings(**reach)} if reach else {}),
                }
            )
        }
    )
    if customize is not None:
        settings = customize(settings)
    children = start_deployment(settings, run_dir)
    return SandboxDeployment(loop, slack, jira, ident, settings, children, slack.events_url or "")


def stop_sandbox(deployment: SandboxDeployment) -> None:
    deployment.children.stop()
    deployment.loop.run(deployment.slack.stop())
    deployment.loop.run(deployment.jira.stop())
    deployment.loop.stop()
