"""What every step of one bench run shares: the broker, the run's topic prefix, its clock."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.budget import Budget
from bench.kafkaio import Admin
from bench.procs import Child

REPO = Path(__file__).resolve().parents[1]


@dataclass
class RunContext:
    bootstrap: str
    prefix: str
    """Every topic, consumer group and app id of the run starts with it (deleted at the end)."""
    run_dir: Path
    admin: Admin
    budget: Budget
    step_limit_s: float
    measure_s: float
    children: list[Child] = field(default_factory=list)

    def namespace(self, part: str) -> str:
        return f"{self.prefix}-{part}"

    def child(self, name: str, argv: list[str]) -> Child:
        """A worker process of this run (stopped by the runner at the end, whatever happens)."""
        child = Child(name, [sys.executable, *argv], self.run_dir / "logs" / f"{name}.log", cwd=REPO)
        self.children.append(child)
        return child
