"""The clock of Reach's first-answer SLAs: every `streams.reach.check_interval_s`, each worker
looks through the Reach watch of the partitions it owns (only threads with a step due: answered
and finished threads are not in it) and sends a `ThreadTimer` to each thread whose step's time
has come. The thread's own state, on its own key, then decides (streams/flows/reach.py), so a
timer sent twice, late, or after an answer changes nothing.

Each worker reads only its active partitions' databases (never a standby copy); at most
`MAX_TIMERS_PER_CHECK` timers go out per check (the rest on the next), and a timer is not sent
again for the same step within `RESEND_AFTER_CHECKS` checks, while the first is on its way.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from pydantic import ValidationError

from schemas import events
from schemas.envelope import Envelope
from schemas.social import ThreadRef, ThreadTimer

if TYPE_CHECKING:
    from streams.app import StreamsContext

log = logging.getLogger(__name__)

MAX_TIMERS_PER_CHECK = 500
MAX_SCANNED_PER_CHECK = 200_000
RESEND_AFTER_CHECKS = 4
FAUST_KEYS = b"__faust"

TIMERS = Counter("threadlink_stream_reach_timers_total", "ThreadTimers sent for first-answer steps due.")


class DueSteps:
    """Which watched threads have a step due, on the partitions this worker owns."""

    def __init__(self, ctx: StreamsContext) -> None:
        self.app, self.table = ctx.app, ctx.tables.watch
        self.topic = ctx.topics.names.social_events
        self.interval_s = ctx.settings.streams.reach.check_interval_s
        self.sent: dict[tuple[str, int], float] = {}

    def active_partitions(self) -> list[int]:
        changelog = self.table.changelog_topic.get_topic_name()
        return sorted(tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == changelog)

    def due(self, now_s: float) -> list[tuple[str, dict[str, Any]]]:
        store = self.table.data
        forget_before = now_s - RESEND_AFTER_CHECKS * self.interval_s
        self.sent = {step: at for step, at in self.sent.items() if at >= forget_before}
        due: list[tuple[str, dict[str, Any]]] = []
        scanned = 0
        for partition in self.active_partitions():
            db = store._dbs.get(partition)  # type: ignore[attr-defined]
            if db is None:
                continue
            for raw_key, raw_value in db.items():
                if raw_key.startswith(FAUST_KEYS):
                    continue  # the store's own bookkeeping (its changelog offset)
                scanned += 1
                if scanned > MAX_SCANNED_PER_CHECK or len(due) >= MAX_TIMERS_PER_CHECK:
                    log.warning("reach: more threads watched than one check reads; the rest come next check")
                    return due
                try:
                    entry = store._decode_value(raw_value)  # type: ignore[attr-defined]
                    key = store._decode_key(raw_key)  # type: ignore[attr-defined]
                    due_at, step = int(entry["due_at"]), int(entry["step"])
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("reach: skipped a watch entry that does not read (%s)", exc.__class__.__name__)
                    continue
                if due_at <= now_s * 1000 and (key, step) not in self.sent:
                    due.append((key, entry))
        return due

    async def send_due(self) -> int:
        now_s = time.time()
        sent = 0
        for key, entry in self.due(now_s):
            try:
                timer = ThreadTimer(
                    thread=ThreadRef.model_validate(entry["thread"]),
                    step=entry["step"],
                    due_at=datetime.fromtimestamp(entry["due_at"] / 1000, UTC),
                    channel_visibility=entry["visibility"],
                )
            except (ValidationError, KeyError, ValueError, OverflowError) as exc:
                log.warning("reach: skipped the watch entry of %r (%s)", key, exc.__class__.__name__)
                continue
            envelope = Envelope.wrap(
                timer, type=events.SOCIAL_TIMER, source_system="streams", subject=key, visibility=entry["visibility"]
            )
            await self.app.producer.send(
                self.topic,
                key=key.encode(),
                value=envelope.to_bytes(),
                partition=None,
                timestamp=None,
                headers=envelope.kafka_headers(),
            )
            self.sent[(key, entry["step"])] = now_s
            sent += 1
        TIMERS.inc(sent)
        return sent


def register(ctx: StreamsContext) -> None:
    reach = ctx.settings.streams.reach
    if not reach.first_answer:
        return
    steps = DueSteps(ctx)

    @ctx.app.timer(interval=reach.check_interval_s)
    async def reach_first_answer_steps() -> None:
        # Faust stops the worker when a timer raises: a broker blip must cost one check, not the worker.
        try:
            sent = await steps.send_due()
        except Exception:
            log.exception("reach: this check failed; the next one tries again")
            return
        if sent:
            log.info("reach: %d thread(s) reached a first-answer step", sent)
