"""`threadlink sandbox post "text"`: post a message as a user in the running sandbox demo's
Slack and show the thread once threadlink answered. The stand-in signs and delivers the event
exactly as Slack would (v0 signature with the sandbox's signing secret), so this is the same
path a real message takes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

ENDPOINTS_FILE = "endpoints.json"


def write_endpoints(run_dir: Path, **endpoints: str) -> Path:
    path = run_dir / ENDPOINTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(endpoints, indent=2))
    return path


def post(run_dir: Path, text: str, *, channel: str | None, thread_ts: str | None, wait_s: float = 30) -> int:
    try:
        endpoints = json.loads((run_dir / ENDPOINTS_FILE).read_text())
    except (OSError, ValueError):
        print(f"threadlink: no sandbox demo is running here (no {run_dir / ENDPOINTS_FILE}); start it with `make run`")
        return 1
    slack, channel = endpoints["slack_url"], channel or endpoints["channel"]
    try:
        # Counted before posting: threadlink may answer within milliseconds.
        before = _bot_replies(slack, channel, thread_ts) if thread_ts else 0
        answer = httpx.post(
            f"{slack}/sandbox/post_message",
            json={"channel": channel, "text": text, "user": "U0YOU", **({"thread_ts": thread_ts} if thread_ts else {})},
            timeout=10,
        ).json()
    except httpx.HTTPError as exc:
        print(
            f"threadlink: the sandbox Slack at {slack} does not answer ({type(exc).__name__}); "
            "is `make run` still running?"
        )
        return 1
    root = thread_ts or answer["ts"]
    print(f"posted to #{channel} (ts {answer['ts']}); waiting up to {wait_s:.0f}s for threadlink's answer ...")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        messages = _thread(slack, channel, root)
        if len([m for m in messages if m.get("bot_id")]) > before:
            for message in messages:
                who = "threadlink" if message.get("bot_id") else message.get("user", "?")
                print(f"  [{who}] {message.get('text', '')}")
            return 0
        time.sleep(0.3)
    print("no card in the thread (does the text mention a ticket, e.g. DEMO-1?)")
    return 0


def _thread(slack: str, channel: str, ts: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{slack}/sandbox/thread", params={"channel": channel, "ts": ts}, timeout=10)
    return response.json().get("messages", []) if response.status_code == 200 else []


def _bot_replies(slack: str, channel: str, ts: str) -> int:
    return len([m for m in _thread(slack, channel, ts) if m.get("bot_id")])
