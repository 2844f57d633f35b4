"""Table load time and worker memory at N records, through the real worker.

For each size: N tickets go to the records topic first; then a worker starts, and the table is
loaded when the worker's table changelogs hold N entries (each ticket taken in writes one). A
sentinel message then gets its card (the worker serves). The worker is stopped and started
again: it serves again when a sentinel sent while it was down gets its card (RocksDB keeps the
tables on disk, so only what changed while it was down is replayed). RSS (psutil, the worker's process tree) is sampled
every 0.2 s: peak during the phase, settled a few seconds after it.
"""

from __future__ import annotations

import time
from typing import Any

from bench.budget import StepTimeout
from bench.context import RunContext
from bench.linkflow import Deployment

SETTLE_S = 3.0
NO_REPLAY_MARGIN_S = 1.0


def _settled_rss(deployment: Deployment) -> int:
    assert deployment.worker is not None
    time.sleep(SETTLE_S)
    deployment.worker.check_alive()
    return deployment.worker.rss()


def measure(ctx: RunContext, size: int, *, keep: bool = False) -> tuple[dict[str, Any], Deployment | None]:
    """The figures of one size; with `keep`, the deployment is returned with its worker serving."""
    budget = ctx.budget
    result: dict[str, Any] = {"records": size}
    deployment = Deployment(ctx, f"table-{size}")
    deployment.create_topics()
    deadline = budget.step(ctx.step_limit_s)
    try:
        produced = deployment.produce_tickets(size, deadline)
        budget.say(f"  {size:,} tickets produced in {produced.seconds:.1f} s; starting the worker")
        worker = deployment.start()
        first, full = deployment.wait_loaded(size, deadline)
        assert first is not None
        result["load"] = {
            "seconds": round(full - worker.started_at, 2),
            "startup_s": round(first - worker.started_at, 2),
            "records_per_s": round(size / max(full - first, 1e-3), 1),
            "peak_rss_bytes": worker.peak_rss(worker.started_at, full),
            "settled_rss_bytes": _settled_rss(deployment),
        }
        before = deployment.cards()
        sent = time.monotonic()
        deployment.send_sentinel(f"{ctx.prefix}-{size}-loaded", deadline)
        result["load"]["sentinel_card_s"] = round(deployment.wait_card(before, deadline, "sentinel card") - sent, 2)
        budget.say(f"  table of {size:,} loaded in {result['load']['seconds']:.1f} s; restarting the worker")
    except StepTimeout as exc:
        result["load"] = {"not_measured": str(exc), "table_entries_then": deployment.table_entries()}
        result["restart"] = {"not_measured": "the first load did not finish"}
        deployment.stop()
        return result, None

    deadline = budget.step(ctx.step_limit_s)
    try:
        stop_s = deployment.stop()
        before = deployment.cards()
        deployment.send_sentinel(f"{ctx.prefix}-{size}-restart", deadline)
        worker = deployment.start()
        served = deployment.wait_card(before, deadline, f"restart of {size:,}: waiting for the sentinel's card")
        serve_s = served - worker.started_at
        startup_s = result["load"]["startup_s"]
        result["restart"] = {
            "serve_s": round(serve_s, 2),
            "stop_s": round(stop_s, 2),
            # The worker's own start-up (as measured at the first start) is not replay; within a second
            # of it there was none to speak of (tables are kept on disk), and a rate would be noise.
            "replay_records_per_s_est": (
                round(size / (serve_s - startup_s), 1) if serve_s - startup_s >= NO_REPLAY_MARGIN_S else None
            ),
            "peak_rss_bytes": worker.peak_rss(worker.started_at, served),
            "settled_rss_bytes": _settled_rss(deployment),
        }
        budget.say(f"  restarted worker of {size:,} serves after {serve_s:.1f} s")
    except StepTimeout as exc:
        result["restart"] = {"not_measured": str(exc)}
        deployment.stop()
        return result, None
    if not keep:
        deployment.stop()
        return result, None
    return result, deployment
