"""RSS of a real `threadlink connectors run` process before and after 100 unauthenticated
10 MiB requests and 200 stalled ones (target: back within 20 MB of its baseline). The load and
the process are tests/integration/webhook_load.py's, which test_webhook_memory.py holds to a
generous bound; here the figure itself is kept."""

from __future__ import annotations

from typing import Any

from bench.context import RunContext
from tests.integration.webhook_load import memory_under_hostile_load, start_connectors

OVERSIZED = 100
STALLED = 200
TARGET_BYTES = 20 * 1000 * 1000
READ_TIMEOUT_S = 5
"""How long the stalled requests are held before their 408 (the test uses 2 s)."""


def measure(ctx: RunContext) -> dict[str, Any]:
    run_dir = ctx.run_dir / "webhook-memory"
    run_dir.mkdir(parents=True, exist_ok=True)
    # The run's namespace: its topics go with the run's.
    process = start_connectors(ctx.bootstrap, ctx.namespace("webhook-memory"), run_dir, read_timeout_s=READ_TIMEOUT_S)
    try:
        report = memory_under_hostile_load(process, oversized_count=OVERSIZED, stalled_count=STALLED)
    finally:
        process.stop()
    return {
        "oversized_requests": OVERSIZED,
        "stalled_requests": STALLED,
        "baseline_rss_bytes": report.baseline,
        "peak_rss_bytes": report.peak,
        "after_rss_bytes": report.after,
        "growth_bytes": report.growth,
        "target_growth_bytes": TARGET_BYTES,
        "within_target": report.growth <= TARGET_BYTES,
        "oversized_answers": {str(k): v for k, v in report.oversized.items()},
        "stalled_answers": dict(report.stalled),
    }
