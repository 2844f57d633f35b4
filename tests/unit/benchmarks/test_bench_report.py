"""A run of some of make bench's steps keeps the figures of the others in results.json/.md."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench import report

pytestmark = pytest.mark.unit

SKIPPED = {"not_measured": "not run (--only sinks)"}
RESULTS = Path(__file__).parents[3] / "bench" / "results.json"


def run(date: str, **figures: Any) -> dict[str, Any]:
    """A run shaped like a real one (the checked-in results), with `figures` replacing its own."""
    (template,) = [r for r in report.load_runs(RESULTS) if not r.get("label")]
    made = copy.deepcopy(template)
    made.update(date=date, label=None, git={**made["git"], "commit": date.replace("-", "") + "0" * 32})
    made.pop("carried_over", None)
    made["figures"].update(figures)
    return made


def test_a_partial_run_keeps_the_earlier_figures_and_says_where_they_come_from(tmp_path: Path) -> None:
    full = run("2026-12-01")
    report.write(tmp_path, copy.deepcopy(full))
    partial = run("2026-12-02", link_flow=dict(SKIPPED), webhook_memory={"not_measured": "x"})

    report.write(tmp_path, partial)

    (latest,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert latest["figures"]["link_flow"] == full["figures"]["link_flow"]
    assert latest["ratios"] == full["ratios"], "the ratios are those of the figures shown"
    origin = {"date": "2026-12-01", "commit": full["git"]["commit"]}
    assert latest["carried_over"] == {"link_flow": origin, "webhook_memory": origin}
    shown = (tmp_path / "results.md").read_text()
    assert "**Carried over** (not run this time, `--only`): link_flow from 2026-12-01 (`202612010000`)" in shown


def test_a_figure_carried_twice_still_names_the_run_that_measured_it(tmp_path: Path) -> None:
    full = run("2026-12-01")
    report.write(tmp_path, copy.deepcopy(full))
    report.write(tmp_path, run("2026-12-02", link_flow=dict(SKIPPED)))
    report.write(tmp_path, run("2026-12-03", link_flow=dict(SKIPPED)))

    (latest,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert latest["carried_over"] == {"link_flow": {"date": "2026-12-01", "commit": full["git"]["commit"]}}
    assert latest["figures"]["link_flow"] == full["figures"]["link_flow"]


def test_a_full_run_carries_nothing(tmp_path: Path) -> None:
    report.write(tmp_path, run("2026-12-01"))
    report.write(tmp_path, run("2026-12-02"))

    (latest,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert latest["date"] == "2026-12-02" and "carried_over" not in latest


def test_a_labelled_run_keeps_the_latest_unlabelled_one_beside_it(tmp_path: Path) -> None:
    report.write(tmp_path, run("2026-12-01"))
    labelled = run("2026-12-02", link_flow=dict(SKIPPED))
    labelled["label"] = "after"

    report.write(tmp_path, labelled)
    report.write(tmp_path, run("2026-12-03"))  # a new latest replaces the old latest, not the label

    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert sorted((r.get("label") or "latest", r["date"]) for r in runs) == [
        ("after", "2026-12-02"),
        ("latest", "2026-12-03"),
    ]
