"""The progress display of long CLI steps, as a CI log shows it (not a terminal)."""

from __future__ import annotations

import io

import pytest

from threadlink.progress import Progress

pytestmark = pytest.mark.unit


def test_a_line_per_tenth_and_a_final_line_off_a_terminal() -> None:
    out = io.StringIO()
    with Progress("dead letters read", total=50, out=out) as progress:
        for _ in range(50):
            progress.advance()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("dead letters read: 1/50 (2%")
    assert len(lines) == 12  # 0%..100% by tenths, plus the final line
    assert lines[-1].startswith("dead letters read: 50/50 (100%")
