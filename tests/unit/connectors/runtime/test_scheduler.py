"""The outbound scheduler's token buckets: a busy lane waits, other lanes go on."""

from __future__ import annotations

from connectors.base import Lane
from connectors.runtime.scheduler import REFILL_MARGIN, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CHANNEL_A = Lane("channel:A", per_second=1.0, burst=2)
CHANNEL_B = Lane("channel:B", per_second=1.0, burst=2)
TIER = Lane("method:chat.update", per_second=10.0, burst=1)


def test_a_lane_takes_its_burst_then_waits_for_its_rate() -> None:
    clock = Clock()
    limits = RateLimiter(clock=clock)
    assert limits.take([CHANNEL_A]) and limits.take([CHANNEL_A])
    assert not limits.take([CHANNEL_A])
    interval = 1.0 / REFILL_MARGIN  # a little over the vendor's 1 s: calls arrive with jitter
    assert limits.delay([CHANNEL_A]) == interval
    clock.now += 1.0
    assert not limits.take([CHANNEL_A]), "a call exactly one interval later could arrive too early"
    clock.now += interval - 1.0
    assert limits.take([CHANNEL_A])


def test_a_busy_lane_does_not_hold_back_another() -> None:
    limits = RateLimiter(clock=Clock())
    while limits.take([CHANNEL_A]):
        pass
    assert limits.take([CHANNEL_B])


def test_tokens_are_taken_from_every_lane_or_from_none() -> None:
    clock = Clock()
    limits = RateLimiter(clock=clock)
    assert limits.take([CHANNEL_A, TIER])
    assert not limits.take([CHANNEL_B, TIER])  # the tier is empty: B keeps its tokens
    clock.now += 0.1
    assert limits.take([CHANNEL_B]) and limits.take([CHANNEL_B])
    assert not limits.take([CHANNEL_B])


def test_a_429_holds_the_lane_for_its_retry_after() -> None:
    clock = Clock()
    limits = RateLimiter(clock=clock)
    limits.hold(CHANNEL_A, 30)
    assert limits.delay([CHANNEL_A]) >= 30
    assert limits.take([CHANNEL_B])
    clock.now += 31
    assert limits.take([CHANNEL_A])


def test_idle_lanes_are_forgotten_past_the_bound() -> None:
    clock = Clock()
    limits = RateLimiter(max_lanes=10, clock=clock)
    for n in range(10):
        limits.take([Lane(f"channel:{n}", 1.0)])
    clock.now += 120
    limits.take([Lane("channel:new", 1.0)])
    assert len(limits) == 1
