"""Sending what cannot be processed to the dead-letter topic, with the reason."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.runtime.limits import MAX_WEBHOOK_BODY_BYTES
from connectors.runtime.metrics import DEAD_LETTERS
from schemas import events
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope
from schemas.topics import TopicNames


def dead_letter_envelope(letter: DeadLetter) -> Envelope[DeadLetter]:
    """The event a dead letter travels in (restricted: it may hold anything the platform sent)."""
    return Envelope.wrap(
        letter, type=events.DEAD_LETTER, source_system=letter.consumer, subject=letter.key, visibility="restricted"
    )


async def send_to_dead_letters(publisher: Any, topics: TopicNames, letter: DeadLetter) -> None:
    await publisher.publish(topics.dead_letters, letter.key or "", dead_letter_envelope(letter))
    DEAD_LETTERS.labels(letter.consumer, letter.error_kind).inc()


#: Dead letters of webhook requests name this instead of a topic: they came over HTTP, so
#: `threadlink dlq replay` cannot send them back to a topic (the platform's own redelivery, or
#: re-posting the stored request once the connector is fixed, does).
WEBHOOK_TOPIC_PREFIX = "webhook:"

#: Headers never stored: credentials and signatures (a stored signature plus body is a replayable
#: request). Matched as parts of the lower-cased name.
_SECRET_HEADER_PARTS = ("authorization", "cookie", "signature", "token", "secret", "api-key", "apikey", "password")


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if not any(part in k.lower() for part in _SECRET_HEADER_PARTS)}


def webhook_dead_letter(
    *,
    connector: str,
    route: str,
    method: str,
    path: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    reason: str,
) -> DeadLetter:
    """The raw request as a dead letter: its value is a JSON document with the method, path,
    query, headers (without secrets) and the body (UTF-8, or base64 when not text). A body too
    large to fit in one record with all that is cut, and says so."""
    request: dict[str, Any] = {"method": method, "path": path, "query": dict(query), "headers": safe_headers(headers)}
    kept = body
    while True:
        try:
            text, encoding = kept.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(kept).decode(), "base64"
        request |= {
            "body": text,
            "body_encoding": encoding,
            "body_bytes": len(body),
            "body_truncated": len(kept) < len(body),
        }
        # ensure_ascii: a letter must always encode, whatever the request held.
        value = json.dumps(request, ensure_ascii=True)
        if len(value) <= MAX_WEBHOOK_BODY_BYTES or not kept:
            break
        kept = kept[: len(kept) // 2]
    return DeadLetter(
        topic=f"{WEBHOOK_TOPIC_PREFIX}{connector}",
        partition=-1,
        offset=-1,
        key=f"{method} {route}",
        value=value,
        error_kind="fatal",
        reason=reason,
        consumer=f"webhook.{connector}",
        failed_at=datetime.now(UTC),
    )
