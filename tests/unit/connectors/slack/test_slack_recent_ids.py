from __future__ import annotations

import pytest

from connectors.runtime.dedup import RecentIds

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_remembers_until_the_ttl_passes() -> None:
    clock = Clock()
    recent = RecentIds(max_items=10, ttl_s=60, clock=clock)
    assert not recent.seen("Ev1")
    recent.remember("Ev1")
    assert recent.seen("Ev1")
    clock.now += 59
    assert recent.seen("Ev1")
    clock.now += 2
    assert not recent.seen("Ev1")
    assert len(recent) == 0


def test_holds_at_most_max_items_dropping_the_oldest() -> None:
    recent = RecentIds(max_items=3, ttl_s=60, clock=Clock())
    for n in range(5):
        recent.remember(f"Ev{n}")
    assert [recent.seen(f"Ev{n}") for n in range(5)] == [False, False, True, True, True]
    assert len(recent) == 3


def test_remembering_again_refreshes() -> None:
    clock = Clock()
    recent = RecentIds(max_items=2, ttl_s=60, clock=clock)
    recent.remember("a")
    clock.now += 30
    recent.remember("b")
    recent.remember("a")  # now the newest
    clock.now += 40  # the first "a" would have expired
    assert recent.seen("a") and recent.seen("b")
    recent.remember("c")  # evicts the oldest: "b"
    assert not recent.seen("b") and recent.seen("a")


def test_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        RecentIds(max_items=0)
