"""W3C Trace Context (`traceparent`) carried from ingest to sink in envelopes and Kafka headers."""

from __future__ import annotations

import re
import secrets

TRACEPARENT_RE = re.compile(r"^00-(?P<trace>[0-9a-f]{32})-(?P<parent>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})$")


def new_traceparent() -> str:
    """Start a trace: where an event enters threadlink without one."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def child_traceparent(parent: str | None) -> str:
    """Same trace, new span id: each hop (source, stream, sink) is its own span."""
    match = TRACEPARENT_RE.match(parent or "")
    if not match:
        return new_traceparent()
    return f"00-{match['trace']}-{secrets.token_hex(8)}-{match['flags']}"


def trace_id(traceparent: str | None) -> str | None:
    match = TRACEPARENT_RE.match(traceparent or "")
    return match["trace"] if match else None
