"""Which offsets of each partition a sink may commit while it works on many commands at once:
everything below the lowest offset it took and has not finished."""

from __future__ import annotations

from collections import deque


class OffsetTracker:
    """Offsets are taken in order per partition (as polled) and finished in any order."""

    def __init__(self) -> None:
        self._taken: dict[int, deque[int]] = {}
        self._finished: dict[int, set[int]] = {}
        self._next: dict[int, int] = {}
        """Per partition, the offset to commit: everything before it is finished."""

    def __len__(self) -> int:
        """Offsets taken and not finished (the sink's in-flight work)."""
        return sum(len(taken) - len(self._finished.get(p, ())) for p, taken in self._taken.items())

    def take(self, partition: int, offset: int) -> None:
        self._taken.setdefault(partition, deque()).append(offset)

    def finish(self, partition: int, offset: int) -> int | None:
        """Returns the partition's new commit point when it moved."""
        taken = self._taken.get(partition)
        if taken is None:
            return None  # a partition given away meanwhile
        finished = self._finished.setdefault(partition, set())
        finished.add(offset)
        last = None
        while taken and taken[0] in finished:
            last = taken.popleft()
            finished.discard(last)
        if last is None or last + 1 <= self._next.get(partition, -1):
            return None
        self._next[partition] = last + 1
        return last + 1

    def lag(self, ends: dict[int, int], positions: dict[int, int]) -> int:
        """Records of the given partitions not done yet: from the oldest unfinished one taken
        (or, with none in flight, the consumer's position) to the partition's end offset."""
        total = 0
        for partition, end in ends.items():
            taken = self._taken.get(partition)
            start = taken[0] if taken else positions.get(partition, end)
            total += max(0, end - start)
        return total

    def commit_points(self) -> dict[int, int]:
        return dict(self._next)

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self._taken.pop(partition, None)
            self._finished.pop(partition, None)
            self._next.pop(partition, None)
