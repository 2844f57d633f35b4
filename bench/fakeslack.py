"""FakeSlack (sandbox/slack_api.py) in a process of its own, for the sink and latency steps: the
process under test and the fake do not share one interpreter's lock, and the bench asks the
fake over HTTP what it saw.

    python -m bench.fakeslack --url-file PATH --signing-secret S --bot-token T [--channels 200]
                              [--channel-limit 1]

Contract checks are off (they cost the fake more CPU than the sink spends per call) and no
events are delivered back (the bench's deployments do not need the bot's own echoes). Besides
Slack's Web API it serves, for the bench:

- `GET /bench/stats`: chat.postMessage calls accepted (`posts`), answered 429 (`rate_limited`),
  and the busiest second of each channel (`peak_per_channel`, when `--channel-limit` is set);
- `GET /bench/posts`: every post accepted, as `[arrival (epoch s), channel, thread_ts, text]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from bench.budget import Deadline
from bench.context import RunContext
from bench.procs import Child
from sandbox.slack_api import FakeSlack

SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench-token"
BOT_USER_ID = "U0BENCHBOT"
BOT_ID = "B0BENCHBOT"
WORKSPACE_URL = "https://acme.slack.com/"


class RecordingSlack(FakeSlack):
    """FakeSlack that notes when each post it accepts arrived (the handler's time)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.posts: list[tuple[float, str, str | None, str]] = []

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        answer = super()._post_message(params)
        thread_ts = params.get("thread_ts")
        self.posts.append((time.time(), answer["channel"], str(thread_ts) if thread_ts else None, str(params["text"])))
        return answer


async def serve(args: argparse.Namespace) -> None:
    slack = RecordingSlack(
        signing_secret=args.signing_secret,
        bot_token=args.bot_token,
        bot_user_id=BOT_USER_ID,
        bot_id=BOT_ID,
        check_contracts=False,
        channel_messages_per_s=args.channel_limit,
    )
    for channel in channel_ids(args.channels):
        slack.add_channel(channel)

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(
            {"posts": len(slack.posts), "rate_limited": slack.rate_limited, "peak_per_channel": slack.peak_per_channel}
        )

    async def posts(_request: web.Request) -> web.Response:
        return web.json_response(slack.posts)

    slack.app.router.add_get("/bench/stats", stats)
    slack.app.router.add_get("/bench/posts", posts)
    url = await slack.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    partial = args.url_file.with_suffix(".partial")
    partial.write_text(url)
    partial.rename(args.url_file)  # whole or absent: the bench never reads half a URL
    try:
        await stop.wait()
    finally:
        # Keep-alive connections of the process under test would hold a graceful stop for a minute.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(slack.stop(), 2)


def channel_ids(count: int) -> list[str]:
    return [f"C0SINK{n:04d}" for n in range(count)]


@dataclass
class Posts:
    stats: dict[str, Any]
    posts: list[tuple[float, str, str | None, str]]


class FakeSlackProcess:
    """The bench's side of a fake started with `start`."""

    def __init__(self, child: Child, url: str) -> None:
        self.child, self.url = child, url
        self.api_url = f"{url}/api"

    @classmethod
    def start(cls, ctx: RunContext, name: str, channels: int, *, channel_limit: int | None = None) -> FakeSlackProcess:
        url_file = ctx.run_dir / name / "fakeslack.url"
        url_file.parent.mkdir(parents=True, exist_ok=True)
        argv = ["-m", "bench.fakeslack", "--url-file", str(url_file), "--channels", str(channels)]
        argv += ["--signing-secret", SIGNING_SECRET, "--bot-token", BOT_TOKEN]
        if channel_limit is not None:
            argv += ["--channel-limit", str(channel_limit)]
        child = ctx.child(f"{name}-fakeslack", argv)
        child.start()
        deadline = time.monotonic() + 60
        while not url_file.exists():
            child.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the fake Slack did not start within 60 s:\n{child.log_tail()}")
            time.sleep(0.05)
        return cls(child, url_file.read_text().strip())

    def stats(self) -> dict[str, Any]:
        self.child.check_alive()
        answer: dict[str, Any] = httpx.get(f"{self.url}/bench/stats", timeout=30).json()
        return answer

    def posts(self) -> list[tuple[float, str, str | None, str]]:
        self.child.check_alive()
        return [tuple(p) for p in httpx.get(f"{self.url}/bench/posts", timeout=120).json()]  # type: ignore[misc]

    def wait_posts(self, count: int, deadline: Deadline, *, stall_s: float, label: str, watch: Child) -> str:
        """Until the fake has `count` posts ("complete"), or none came for `stall_s` ("stalled")."""
        seen, changed = -1, time.monotonic()
        while True:
            posts = int(self.stats()["posts"])
            now = time.monotonic()
            if posts != seen:
                seen, changed = posts, now
            if posts >= count:
                return "complete"
            if now - changed >= stall_s:
                return "stalled"
            watch.check_alive()
            deadline.check(f"{label}: {posts:,} of {count:,} posts")
            deadline.budget.tick(f"{label}: {posts:,}/{count:,} posts")
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fakeslack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url-file", type=Path, required=True, help="where its base URL is written once it serves")
    parser.add_argument("--channels", type=int, default=200, help="channels the bot is a member of")
    parser.add_argument("--channel-limit", type=int, default=None, help="posts per channel per second (429 above)")
    parser.add_argument("--signing-secret", default=SIGNING_SECRET)
    parser.add_argument("--bot-token", default=BOT_TOKEN)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
