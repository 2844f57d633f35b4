"""`threadlink links`: ask a streams worker which threads discuss a record, or which records a
thread touches (streams/queries.py serves the answers), and print them for a person or as JSON."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from threadlink.config import Settings

#: A worker answers 503 while its group rebalances; ask again for about this long.
REBALANCE_PATIENCE_S = 15.0


class LinksError(Exception):
    """What went wrong, said for a person."""


@dataclass(frozen=True)
class Query:
    path: str
    param: str
    value: str
    audience: str | None = None


def worker_url(settings: Settings, override: str | None) -> str:
    if override:
        return override.rstrip("/")
    host = settings.streams.web_host
    # A worker listening on every interface is reached on this machine through loopback.
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{settings.streams.web_port}"


def ask(base_url: str, query: Query, *, timeout_s: float = 10.0) -> dict[str, Any]:
    params = {query.param: query.value}
    if query.audience:
        params["audience"] = query.audience
    deadline = time.monotonic() + REBALANCE_PATIENCE_S
    while True:
        try:
            response = httpx.get(f"{base_url}{query.path}", params=params, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise LinksError(
                f"no streams worker answers at {base_url} ({exc.__class__.__name__}); is `threadlink streams run` "
                "running? Point --worker at one."
            ) from exc
        if response.status_code == 503 and time.monotonic() < deadline:
            time.sleep(1.0)
            continue
        try:
            body = response.json()
        except ValueError as exc:
            raise LinksError(f"{base_url} answered {response.status_code} without JSON") from exc
        if response.status_code != 200:
            raise LinksError(body.get("error") or f"{base_url} answered {response.status_code}")
        if not isinstance(body, dict):
            raise LinksError(f"{base_url} answered something that is not a links answer")
        return body


def _when(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return "-"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def format_threads(answer: dict[str, Any]) -> list[str]:
    title = f" {answer['title']}" if answer.get("title") else ""
    head = f"{answer['record']}{title}"
    if answer.get("missing"):
        head += f" (missing: {answer['missing']})"
    lines = [head]
    for thread in answer["threads"]:
        where = thread.get("permalink") or thread["thread"]
        lines.append(
            f"  {_when(thread.get('mentioned_at'))}  {thread['status']:9} {thread['place_visibility']:10} {where}"
        )
    lines.append(f"{len(answer['threads'])} thread(s)")
    return lines


def format_records(answer: dict[str, Any]) -> list[str]:
    lines = [answer["thread"]]
    escalation = answer.get("escalation")
    if escalation:
        ticket = escalation.get("ticket") or "-"
        lines.append(f"  escalation: {escalation['status']} {ticket} {escalation.get('url') or ''}".rstrip())
    for record in answer["records"]:
        lines.append(f"  {record['record']:30} {', '.join(record['roles'])}")
    lines.append(f"{len(answer['records'])} record(s)")
    return lines
