"""Time limits and progress lines: every step of the bench is bounded, and so is the whole run.

A step past its own limit raises StepTimeout: its figure becomes "not measured: exceeded N s"
and the run goes on. Past the run's limit, RunAborted ends the run (children killed, topics
deleted, what was measured so far written).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass


class StepTimeout(Exception):
    """A step went past its time limit; str() says what it was doing."""


class RunAborted(Exception):
    """The whole run went past its time limit."""


class Budget:
    """The run's clock: its deadline, and the progress lines every step prints."""

    def __init__(self, limit_s: float) -> None:
        self.started = time.monotonic()
        self.limit_s = limit_s
        self.at = self.started + limit_s
        self._last_tick = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def step(self, limit_s: float) -> Deadline:
        return Deadline(min(time.monotonic() + limit_s, self.at), limit_s, self)

    def say(self, message: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {message}", file=sys.stdout, flush=True)

    def tick(self, message: str, every_s: float = 5.0) -> None:
        """A progress line, at most one every `every_s` seconds."""
        now = time.monotonic()
        if now - self._last_tick >= every_s:
            self._last_tick = now
            self.say(f"  {message}")


@dataclass(frozen=True)
class Deadline:
    at: float
    limit_s: float
    budget: Budget

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def check(self, doing: str) -> None:
        now = time.monotonic()
        if now >= self.budget.at:
            raise RunAborted(f"the run exceeded its {self.budget.limit_s:.0f} s limit while {doing}")
        if now >= self.at:
            raise StepTimeout(f"exceeded {self.limit_s:.0f} s ({doing})")
