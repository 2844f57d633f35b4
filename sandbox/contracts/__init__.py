"""Vendors' published contracts (OpenAPI, JSON Schema) and validation against them.

The spec files are not part of threadlink: they are read from THREADLINK_SPECS_DIR
(default: ../shared/specs next to the checkout, which CI has).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPECS_ENV = "THREADLINK_SPECS_DIR"
_REPO = Path(__file__).resolve().parents[2]


class SpecsMissing(RuntimeError):
    """A vendor spec file is not where we look for it."""


def specs_dir() -> Path:
    return Path(os.environ.get(SPECS_ENV) or (_REPO.parent / "shared" / "specs")).resolve()


def spec_file(relative: str) -> Path:
    """Path of one spec file, e.g. `slack/slack_web_openapi_v2.json`; a clear error if absent."""
    path = specs_dir() / relative
    if not path.is_file():
        raise SpecsMissing(
            f"vendor spec {relative!r} not found in {specs_dir()}: set {SPECS_ENV} to the folder "
            "that holds slack/, jira/, github/ and matrix/ (CI uses ../shared/specs)"
        )
    return path


@dataclass(frozen=True)
class Violation:
    """One way a request or response differs from the published contract."""

    method: str
    path: str
    where: str
    """`request.path`, `request.query`, `request.body`, `response.status`, `response.body`."""
    message: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.where}] {self.message}"


class ContractViolation(AssertionError):
    """Raised in strict mode, or by a stand-in's `assert_no_violations()`: the traffic does not
    follow the vendor's published contract."""

    def __init__(self, violations: Iterable[Violation]) -> None:
        self.violations = list(violations)
        super().__init__("; ".join(str(v) for v in self.violations))


def json_path(path: Iterable[Any]) -> str:
    """A validation error's place, e.g. `$.events[0].content`."""
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out
