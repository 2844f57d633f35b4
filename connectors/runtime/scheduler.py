"""The outbound scheduler: every vendor limit a sink must keep, as token buckets named by lane.

A sink says which lanes a command travels (`Sink.lanes`: Slack's channel and its method tier,
Jira's issue, Zendesk's account-wide quota); the runtime takes one token from each before each
attempt. A command whose lane is empty waits on its own key; commands of other keys and other
lanes go on. A 429 holds the command's first (narrowest) lane for the platform's Retry-After,
so the next commands of that channel wait instead of being refused too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from connectors.base import Lane

REFILL_MARGIN = 0.95
"""Buckets refill this much of a lane's rate. Vendors count calls as they arrive; ours leave at
a token's time and arrive after a latency that varies by tens of milliseconds, so two calls one
full interval apart could arrive less than that apart (the bench saw one 429 per channel at
Slack's 1/s without it)."""


class _Bucket:
    __slots__ = ("held_until", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens, self.stamp, self.held_until = tokens, stamp, 0.0


class RateLimiter:
    """Token buckets per lane name, for one event loop. Idle buckets (full again) are forgotten
    once more than `max_lanes` exist, so a sink that has seen a million channels holds only the
    busy ones."""

    def __init__(self, *, max_lanes: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._max_lanes = max_lanes
        self._clock = clock

    def __len__(self) -> int:
        return len(self._buckets)

    def delay(self, lanes: Sequence[Lane]) -> float:
        """Seconds until every lane has a token (0: now)."""
        now = self._clock()
        return max((self._delay(lane, now) for lane in lanes), default=0.0)

    def take(self, lanes: Sequence[Lane]) -> bool:
        """Take one token from every lane, or none when any lane has none."""
        now = self._clock()
        if any(self._delay(lane, now) > 0 for lane in lanes):
            return False
        for lane in lanes:
            self._bucket(lane, now).tokens -= 1
        return True

    def hold(self, lane: Lane, seconds: float) -> None:
        """The platform refused for a while (429 Retry-After): nothing goes on this lane sooner."""
        now = self._clock()
        bucket = self._bucket(lane, now)
        bucket.held_until = max(bucket.held_until, now + seconds)
        bucket.tokens = min(bucket.tokens, 0.0)

    def _delay(self, lane: Lane, now: float) -> float:
        bucket = self._bucket(lane, now)
        held = bucket.held_until - now
        short = (1 - bucket.tokens) / (lane.per_second * REFILL_MARGIN) if bucket.tokens < 1 else 0.0
        return max(held, short, 0.0)

    def _bucket(self, lane: Lane, now: float) -> _Bucket:
        bucket = self._buckets.get(lane.name)
        if bucket is None:
            if len(self._buckets) >= self._max_lanes:
                self._forget_idle(now)
            bucket = self._buckets[lane.name] = _Bucket(float(lane.burst), now)
            return bucket
        bucket.tokens = min(float(lane.burst), bucket.tokens + (now - bucket.stamp) * lane.per_second * REFILL_MARGIN)
        bucket.stamp = now
        return bucket

    def _forget_idle(self, now: float) -> None:
        # A bucket untouched for a minute is full again (every vendor limit refills faster):
        # indistinguishable from a new one.
        for name in [n for n, b in self._buckets.items() if b.held_until <= now and now - b.stamp > 60]:
            del self._buckets[name]
