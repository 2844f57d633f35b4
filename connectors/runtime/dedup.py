"""Recently seen ids, for webhook sources whose platform redelivers (Slack retries an event up
to three times when our answer is late or not 2xx).

In memory and per process: it removes the redeliveries of one instance's recent past, which
is nearly all of them. The envelope id is the platform's event id, so anything that slips
through (a restart, another replica) is still recognisable downstream.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable


class RecentIds:
    """A set of ids that forgets them after `ttl_s`, and holds at most `max_items`
    (the oldest go first). Not thread-safe; meant for one event loop.

    Example::

        recent = RecentIds(max_items=3, ttl_s=60)
        if not recent.seen("Ev1"):
            publish(...)
            recent.remember("Ev1")  # only once the work is done: a failed try is retried
    """

    def __init__(
        self, max_items: int = 100_000, ttl_s: float = 3600, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_items < 1 or ttl_s <= 0:
            raise ValueError("max_items must be >= 1 and ttl_s > 0")
        self.max_items = max_items
        self.ttl_s = ttl_s
        self._clock = clock
        # id -> expiry. Insertion order is expiry order (same ttl, monotonic clock, re-remembered
        # ids move to the end), so expired ids are always at the front.
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        self._forget_expired(self._clock())
        return len(self._expiry)

    def seen(self, id: str) -> bool:
        now = self._clock()
        self._forget_expired(now)
        return id in self._expiry

    def remember(self, id: str) -> None:
        now = self._clock()
        self._forget_expired(now)
        self._expiry[id] = now + self.ttl_s
        self._expiry.move_to_end(id)
        while len(self._expiry) > self.max_items:
            self._expiry.popitem(last=False)

    def _forget_expired(self, now: float) -> None:
        while self._expiry:
            oldest, expiry = next(iter(self._expiry.items()))
            if expiry > now:
                return
            del self._expiry[oldest]


class InFlight:
    """Work under way, by key (a webhook delivery being published): a second request for a key
    whose work is under way waits for it, sharing its outcome (a failure fails both, so the
    platform redelivers), instead of doing it again; a client that hangs up does not cancel the
    work half-way. For one event loop."""

    def __init__(self) -> None:
        self._work: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._work)

    async def once(self, key: str, work: Callable[[], Awaitable[None]]) -> bool:
        """Run `work()` for `key`, or wait for the run already under way; True when this call ran it."""
        pending = self._work.get(key)
        if pending is not None:
            await asyncio.shield(pending)
            return False
        running = asyncio.ensure_future(work())
        self._work[key] = running
        running.add_done_callback(lambda done: self._work.pop(key) if self._work.get(key) is done else None)
        await asyncio.shield(running)
        return True
