"""Memory stays flat under hostile load: 100 unauthenticated 10 MiB requests and 200 stalled
ones against a real `threadlink connectors run` child process. The bench (`make bench`) holds
the figure the issue asks for (within 20 MB of the baseline); this test a generous bound, so
it stays reliable on a busy machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.webhook_load import MIB, memory_under_hostile_load, start_connectors

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_rss_is_back_near_its_baseline_after_oversized_and_stalled_requests(
    kafka_bootstrap: str, namespace: str, tmp_path: Path
) -> None:
    process = start_connectors(kafka_bootstrap, f"{namespace}-memory", tmp_path, read_timeout_s=2)
    try:
        report = memory_under_hostile_load(process)
    finally:
        process.stop()
    assert report.oversized == {413: 100}, report.lines()
    assert report.stalled == {"HTTP/1.1 408 Request Timeout": 200}, report.lines()
    assert report.growth < 60 * MIB, report.lines()
    log = (tmp_path / "connectors.log").read_text()
    assert "Traceback" not in log and " ERROR " not in log
