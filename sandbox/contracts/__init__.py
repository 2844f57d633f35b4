"""Vendors' published contracts (OpenAPI, JSON Schema) and validation against them.

The spec files are not part of threadlink: they are read from THREADLINK_SPECS_DIR
(default: ../shared/specs next to the checkout, which CI has).
"""

from __future__ import annotations

import os
from pathlib import Path

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
