"""Throughput of a flow, the same way for every flow under test.

A flow reads the workload's messages from its input topic and writes outputs (cards, or copies)
to an output topic whose records carry the broker's append time. After the run:

- the window is from the first to the last output (broker time), so start-up is not counted;
- messages processed are counted per input partition, up to the furthest message that has an
  output (a partition is consumed in order); messages with no output in between count too;
- the rate is messages processed / window.

A run ends when every expected output is there, when `measure_s` have passed since the first
output (then the figure is the rate of what was processed, and says so), or when no output came
for `stall_s`.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.budget import Budget, Deadline
from bench.kafkaio import Admin, Output, Produced
from bench.procs import Child
from bench.workload import Message

STALL_S = 30.0


@dataclass
class Throughput:
    messages_per_s: float | None
    messages_processed: int
    messages_sent: int
    outputs: int
    outputs_expected: int
    window_s: float | None
    outputs_per_s: float | None
    ended: str
    """complete, time-capped (measure_s after the first output), or stalled."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Waited:
    ended: str
    seen: int


def wait_for_outputs(
    admin: Admin,
    topic: str,
    *,
    expected: int,
    base: int,
    measure_s: float,
    deadline: Deadline,
    child: Child,
    budget: Budget,
    label: str,
) -> Waited:
    """Poll the output topic's end offset until the run ends (see the module doc)."""
    first_at: float | None = None
    last_change, seen = time.monotonic(), 0
    while True:
        now = time.monotonic()
        count = admin.end_offsets([topic])[topic] - base
        if count != seen:
            seen, last_change = count, now
            first_at = first_at or now
        if seen >= expected:
            return Waited("complete", seen)
        if first_at is not None and now - first_at >= measure_s:
            return Waited("time-capped", seen)
        if first_at is not None and now - last_change >= STALL_S:
            return Waited("stalled", seen)
        child.check_alive()
        deadline.check(f"{label}: {seen:,} of {expected:,} outputs")
        budget.tick(f"{label}: {seen:,}/{expected:,} outputs")
        time.sleep(0.25)


def throughput(
    outputs: list[Output],
    reply_to: Callable[[bytes], str | None],
    messages: list[Message],
    produced: Produced,
    *,
    expected: int,
    ended: str,
) -> Throughput:
    where = {m.message_id: produced.positions[i] for i, m in enumerate(messages)}
    offsets: dict[int, list[int]] = defaultdict(list)
    for partition, offset in produced.positions:
        offsets[partition].append(offset)
    for partition_offsets in offsets.values():
        partition_offsets.sort()
    furthest: dict[int, int] = {}
    first = last = None
    count = 0
    for output in outputs:
        position = where.get(reply_to(output.value) or "")
        if position is None:
            continue  # a sentinel's card, or an output of something else
        count += 1
        first = output.timestamp_ms if first is None else min(first, output.timestamp_ms)
        last = output.timestamp_ms if last is None else max(last, output.timestamp_ms)
        partition, offset = position
        furthest[partition] = max(furthest.get(partition, -1), offset)
    processed = sum(bisect_right(offsets[p], furthest[p]) for p in furthest)
    window = (last - first) / 1000 if first is not None and last is not None and last > first else None
    return Throughput(
        messages_per_s=round(processed / window, 1) if window else None,
        messages_processed=processed,
        messages_sent=len(messages),
        outputs=count,
        outputs_expected=expected,
        window_s=round(window, 3) if window else None,
        outputs_per_s=round((count - 1) / window, 1) if window else None,
        ended=ended,
    )
