"""Commit points while commands finish out of order."""

from __future__ import annotations

from connectors.runtime.offsets import OffsetTracker


def test_the_commit_point_is_below_the_lowest_unfinished_offset() -> None:
    offsets = OffsetTracker()
    for offset in (5, 6, 7, 8):
        offsets.take(0, offset)
    assert offsets.finish(0, 7) is None  # 5 and 6 are still on their way
    assert offsets.finish(0, 5) == 6
    assert offsets.finish(0, 6) == 8  # 7 was done already
    assert len(offsets) == 1
    assert offsets.finish(0, 8) == 9
    assert offsets.commit_points() == {0: 9}
    assert len(offsets) == 0


def test_partitions_are_independent_and_forgotten_when_given_away() -> None:
    offsets = OffsetTracker()
    offsets.take(0, 1)
    offsets.take(1, 10)
    assert offsets.finish(1, 10) == 11
    offsets.forget({0})
    assert offsets.finish(0, 1) is None
    assert offsets.commit_points() == {1: 11}


def test_lag_counts_from_the_oldest_unfinished_command_or_the_position() -> None:
    offsets = OffsetTracker()
    for offset in (5, 6, 7):
        offsets.take(0, offset)
    offsets.finish(0, 6)
    # Partition 0: 5 is unfinished, so 5..19 are not done; partition 1 has nothing in flight:
    # only what the consumer has not read yet counts.
    assert offsets.lag({0: 20, 1: 40}, {0: 8, 1: 31}) == 15 + 9
    offsets.finish(0, 5)
    offsets.finish(0, 7)
    assert offsets.lag({0: 20}, {0: 8}) == 12
    assert offsets.lag({0: 8}, {0: 8}) == 0
