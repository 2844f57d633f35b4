"""bench/results.json (raw numbers) and bench/results.md (the figures, for people).

results.json holds a list of runs. A run with a label (`make bench LABEL=before`) stays for
before/after comparisons (a later run with the same label replaces it); a run without one is
"latest" and replaces the previous unlabelled run. results.md shows the newest run in full, then
every kept run side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import broker
from bench.context import REPO

FORMAT = 1
PACKAGES = {"faust": "faust-streaming", "aiokafka": "aiokafka", "kafka_python": "kafka-python", "pydantic": "pydantic"}


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def new_run(args: argparse.Namespace, run_id: str) -> dict[str, Any]:
    import psutil

    return {
        "label": args.label,
        "run_id": run_id,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": {
            "commit": _git("rev-parse", "HEAD"),
            "branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        },
        "machine": {
            "cores": os.cpu_count(),
            "cpu": _cpu_model(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": {
            "python": platform.python_version(),
            **{name: _version(package) for name, package in PACKAGES.items()},
            "kafka": broker.kafka_version(),
        },
        "settings": {
            "sizes": args.sizes,
            "messages": args.messages,
            "link_tickets": args.link_tickets,
            "broker_records": args.broker_records,
            "measure_s": args.measure_s,
            "step_limit_s": args.step_limit,
            "max_minutes": args.max_minutes,
        },
        "figures": {},
        "aborted": None,
    }


def _rate(figure: Any) -> float | None:
    if isinstance(figure, dict):
        value = figure.get("messages_per_s", figure.get("limit_records_per_s"))
        return float(value) if isinstance(value, int | float) else None
    return None


def finish_run(record: dict[str, Any]) -> None:
    """End-of-run facts and the ratios of each flow to the broker's limit and to plain Faust."""
    record["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    figures = record["figures"]
    limit = _rate(figures.get("broker"))
    plain = figures.get("plain_faust", {})
    flows = {
        "plain_passthrough": _rate(plain.get("passthrough")),
        "plain_lookup": _rate(plain.get("lookup")),
        "link_flow": _rate(figures.get("link_flow")),
    }
    ratios: dict[str, float | None] = {}
    for name, rate in flows.items():
        ratios[f"{name}_vs_broker"] = round(rate / limit, 5) if rate and limit else None
    link, lookup, passthrough = flows["link_flow"], flows["plain_lookup"], flows["plain_passthrough"]
    ratios["link_flow_vs_plain_lookup"] = round(link / lookup, 4) if link and lookup else None
    ratios["link_flow_vs_plain_passthrough"] = round(link / passthrough, 4) if link and passthrough else None
    record["ratios"] = ratios


def load_runs(path: Path) -> list[dict[str, Any]]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return list(doc.get("runs", [])) if isinstance(doc, dict) else []


def write(out: Path, record: dict[str, Any]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    runs = [r for r in load_runs(json_path) if r.get("label") and r.get("label") != record.get("label")]
    runs.append(record)
    json_path.write_text(json.dumps({"format": FORMAT, "runs": runs}, indent=2) + "\n")
    md_path.write_text(render(runs))
    return [md_path, json_path]


# --------------------------------------------------------------------------- markdown


def _num(value: Any, digits: int = 0) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, int | float) else "-"


def _mib(value: Any) -> str:
    return f"{value / 2**20:,.0f} MiB" if isinstance(value, int | float) and value else "-"


def _pct(value: Any) -> str:
    return f"{value * 100:.2f} %" if isinstance(value, int | float) else "-"


def _times(value: Any) -> str:
    return f"{value:.3f}x" if isinstance(value, int | float) else "-"


def _missing(figure: Any) -> str | None:
    if not isinstance(figure, dict):
        return "not measured"
    reason = figure.get("not_measured")
    return f"not measured: {reason}" if reason else None


def _name(run: dict[str, Any]) -> str:
    return run.get("label") or "latest"


def _flow_note(figure: dict[str, Any], measure_s: Any) -> str:
    processed, sent = figure.get("messages_processed"), figure.get("messages_sent")
    ended = figure.get("ended")
    if ended == "time-capped":
        return f"time-capped: {_num(measure_s)} s after the first output, {_num(processed)} of {_num(sent)} messages"
    if ended == "stalled":
        return f"stalled: no output for 30 s, {_num(processed)} of {_num(sent)} messages"
    return f"all {_num(sent)} messages, {_num(figure.get('outputs'))} outputs in {_num(figure.get('window_s'), 1)} s"


def render(runs: list[dict[str, Any]]) -> str:
    run = runs[-1]
    figures, ratios = run["figures"], run.get("ratios", {})
    machine, versions, git, settings = run["machine"], run["versions"], run["git"], run["settings"]
    lines = [
        "# threadlink benchmark results",
        "",
        "Written by `make bench` (the harness is in `bench/`; raw numbers in `results.json`). "
        "One worker process per flow, one broker, all on this machine.",
        "",
        f"- **Run**: {run['date']}, {_name(run)}, commit `{(git.get('commit') or '?')[:12]}`"
        f"{' (uncommitted changes)' if git.get('dirty') else ''} on `{git.get('branch')}`, "
        f"{_num(run.get('duration_s'), 0)} s in all"
        + (f"; **aborted**: {run['aborted']}" if run.get("aborted") else ""),
        f"- **Machine**: {machine['cores']} cores, {machine['cpu']}, {machine.get('memory_gib')} GiB; load average "
        f"{machine.get('load_average_start')} at the start, {machine.get('load_average_end')} at the end "
        "(a shared machine: other work was running, so figures are noisy)",
        f"- **Versions**: Python {versions['python']}, Faust (faust-streaming) {versions['faust']}, aiokafka "
        f"{versions['aiokafka']}, kafka-python {versions['kafka_python']}, pydantic {versions['pydantic']}, "
        f"Apache Kafka {versions['kafka']} (KRaft, one broker)",
        "",
        "## Throughput",
        "",
        "| figure | rate | MB/s | vs broker limit | vs plain Faust lookup | worker RSS | how it ended |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    broker_figure = figures.get("broker")
    missing = _missing(broker_figure)
    if missing:
        lines.append(f"| broker (Kafka's perf tools) | {missing} | | | | | |")
    else:
        producer, consumer = broker_figure["producer"], broker_figure["consumer"]
        lines += [
            f"| broker: ProducerPerformance, acks=all | {_num(producer['records_per_s'])} records/s | "
            f"{_num(producer['mb_per_s'], 1)} | | | | {_num(producer['records'])} records, avg latency "
            f"{_num(producer['avg_latency_ms'])} ms |",
            f"| broker: ConsumerPerformance | {_num(consumer['records_per_s'])} records/s | "
            f"{_num(consumer['mb_per_s'], 1)} | | | | {_num(consumer['records'])} records (fetch time, without the "
            "group join) |",
        ]
    plain = figures.get("plain_faust", {})
    rows = [
        ("plain Faust: pass-through", plain.get("passthrough"), ratios.get("plain_passthrough_vs_broker"), None),
        ("plain Faust: key lookup", plain.get("lookup"), ratios.get("plain_lookup_vs_broker"), None),
        (
            "**threadlink link flow**",
            figures.get("link_flow"),
            ratios.get("link_flow_vs_broker"),
            ratios.get("link_flow_vs_plain_lookup"),
        ),
    ]
    for title, figure, vs_broker, vs_plain in rows:
        missing = _missing(figure)
        if missing:
            lines.append(f"| {title} | {missing} | | | | | |")
            continue
        lines.append(
            f"| {title} | {_num(figure['messages_per_s'])} messages/s | | {_pct(vs_broker)} | "
            f"{_times(vs_plain) if vs_plain else ''} | {_mib(figure.get('rss_bytes'))} | "
            f"{_flow_note(figure, settings.get('measure_s'))} |"
        )
    if ratios.get("link_flow_vs_plain_passthrough"):
        lines += [
            "",
            f"The link flow runs at {_times(ratios['link_flow_vs_plain_passthrough'])} plain Faust's "
            "pass-through rate.",
        ]
    lines += _tables_section(figures.get("tables", {}))
    lines += _workload_section(figures.get("workload"), settings)
    lines += _comparison_section(runs)
    lines += _method_section()
    return "\n".join(lines) + "\n"


def _tables_section(tables: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Table load and restart (the real worker)",
        "",
        "| records | first load | load rate | peak RSS | settled RSS | restart: serves after | replay (est.) "
        "| peak RSS | settled RSS |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size, figure in sorted(tables.items(), key=lambda item: int(item[0])):
        load, restart = figure.get("load", figure), figure.get("restart", {})
        cells = [f"{int(size):,}"]
        cells += _phase_cells(load, f"{_num(load.get('seconds'), 1)} s", load.get("records_per_s"))
        cells += _phase_cells(restart, f"{_num(restart.get('serve_s'), 1)} s", restart.get("replay_records_per_s_est"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _phase_cells(phase: dict[str, Any], took: str, rate: Any) -> list[str]:
    """time, rate, peak and settled RSS of a table phase (load, restart), or why it was not measured."""
    missing = _missing(phase)
    if missing:
        return [missing, "", "", ""]
    return [took, f"{_num(rate)} records/s", _mib(phase["peak_rss_bytes"]), _mib(phase["settled_rss_bytes"])]


def _workload_section(workload: Any, settings: dict[str, Any]) -> list[str]:
    if not isinstance(workload, dict):
        return []
    by = workload["messages_by_mentions"]
    size, ticket = workload["message_bytes"], workload["ticket_bytes"]
    return [
        "",
        "## Workload",
        "",
        f"- {_num(workload['messages'])} messages (`Envelope[SocialMessage]` JSON, {size.get('min')}-{size.get('max')} "
        f"bytes, median {size.get('median')}) in {_num(workload['threads'])} threads; mentions per message: "
        f"none {_num(by['0'])}, one {_num(by['1'])}, two {_num(by['2'])} (uniform thirds, seed {workload['seed']}).",
        f"- {_num(workload['mentions'])} mentions, of which {_num(workload['mentions_unknown'])} name a key that is "
        f"not in the table (about 1 in 100: the link flow fetches those and posts no card); "
        f"{_num(workload['cards_expected'])} cards expected (one per thread and ticket).",
        f"- Tickets: `Envelope[RecordEvent]` JSON ({ticket.get('min')}-{ticket.get('max')} bytes), "
        f"{_num(settings['link_tickets'])} in the link flow's table; the plain lookup keeps the same tickets "
        "in a dict.",
        f"- Every input topic has 4 partitions; the broker's tools use the same envelopes as payloads "
        f"({_num(settings['broker_records'])} records).",
    ]


def _comparison_section(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Before/after",
        "",
        "Runs kept for comparison (`make bench LABEL=name` keeps a run under that name; the newest unlabelled "
        "run is `latest`). Messages per second, one worker.",
        "",
        "| run | date | commit | broker limit (records/s) | plain pass-through | plain lookup | link flow "
        "| link / plain lookup |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        figures, ratios = run["figures"], run.get("ratios", {})
        plain = figures.get("plain_faust", {})
        lines.append(
            f"| {_name(run)} | {run['date'][:10]} | `{(run['git'].get('commit') or '?')[:9]}` | "
            f"{_num(_rate(figures.get('broker')))} | {_num(_rate(plain.get('passthrough')))} | "
            f"{_num(_rate(plain.get('lookup')))} | {_num(_rate(figures.get('link_flow')))} | "
            f"{_times(ratios.get('link_flow_vs_plain_lookup'))} |"
        )
    lines += [
        "",
        "| run | records | first load | restart: serves after | settled RSS after restart |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        for size, figure in sorted(run["figures"].get("tables", {}).items(), key=lambda item: int(item[0])):
            load, restart = figure.get("load", figure), figure.get("restart", {})
            lines.append(
                f"| {_name(run)} | {int(size):,} | {_missing(load) or _num(load['seconds'], 1) + ' s'} | "
                f"{_missing(restart) or _num(restart['serve_s'], 1) + ' s'} | "
                f"{'' if _missing(restart) else _mib(restart['settled_rss_bytes'])} |"
            )
    return lines


def _method_section() -> list[str]:
    return [
        "",
        "## How it is measured",
        "",
        "- **Broker**: `org.apache.kafka.tools.ProducerPerformance` (acks=all, no throttle, payloads picked from "
        "1,000 message envelopes) then `ConsumerPerformance` reading them back. The broker limit used for the "
        "ratios is the lower of the two rates.",
        "- **Flows**: messages go to the flow's input topic; the flow writes its outputs (cards; the pass-through's "
        "copies) to a topic stamped with the broker's append time. The window runs from the first to the last "
        "output, so start-up is not counted. Messages processed are counted per input partition up to the furthest "
        "message that has an output; rate = processed / window. A flow is stopped when every expected output is "
        "there, or when the measurement cap after its first output has passed (then the rate is that of what was "
        "processed), or after 30 s without output.",
        "- **Plain Faust** (`bench/faust_plain.py`): one worker process each, Faust's defaults (JSON values, "
        "acks=-1, memory store); the pass-through sends each message on; the lookup finds keys with the "
        "project's mention regex, looks them up in a dict and awaits one `topic.send()` per hit.",
        "- **Link flow**: `threadlink streams run` with a config file for the bench's namespace; topics from "
        "`schemas/topics.py`'s catalog (messages topic at 4 partitions); cards counted on `<ns>.commands.slack`. "
        "It runs on the worker of the table step of the same size, after that worker's restart.",
        "- **Tables**: tickets are produced first, then the worker starts; loaded = the worker's table changelogs "
        "hold N entries (one per ticket). A sentinel message then gets its card. Restart: the worker is stopped, "
        "a sentinel is sent, the worker starts; it serves again when the sentinel's card is out. The replay rate is "
        "an estimate: N / (time to serve - the first start's start-up time). RSS: psutil, the worker's process "
        "tree, sampled every 0.2 s; peak during the phase, settled 3 s after it.",
        "- **Bounds**: every step has a time limit (a step past it is `not measured: exceeded N s`), the whole "
        "run stops cleanly at its limit; every topic of a run (`bench-<run id>*`) is deleted at its end.",
    ]
