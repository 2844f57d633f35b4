"""Reading topics in tests, on the real broker."""

from __future__ import annotations

import time
from typing import Any

from pydantic import TypeAdapter

from connectors.runtime.kafka import read_to_end
from schemas.envelope import Envelope


def envelopes(bootstrap: str, topic: str, model: Any) -> list[Any]:
    adapter = TypeAdapter(Envelope[model])
    return [adapter.validate_json(r.value) for r in read_to_end(bootstrap, topic, client_id="threadlink-tests")]


def wait_for(predicate: Any, timeout_s: float = 60, interval_s: float = 0.25, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; generous timeouts keep a noisy 2-core CI reliable."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)
