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
from collections.abc import Callable
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
            "sink_commands": args.sink_commands,
            "hot_commands": args.hot_commands,
            "other_commands": args.other_commands,
            "ledger_entries": args.ledger_entries,
            "latency_rates": args.latency_rates,
            "latency_s": args.latency_s,
            "latency_threads": args.latency_threads,
            "only": sorted(args.only),
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
    _ratios(record)


def _ratios(record: dict[str, Any]) -> None:
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


def _not_measured(figure: Any) -> bool:
    """Only `--only`'s placeholders (or nothing at all) inside."""
    if isinstance(figure, dict):
        if "not_measured" in figure:
            return True
        return all(_not_measured(value) for value in figure.values())
    return False


def carry_over(record: dict[str, Any], previous: dict[str, Any] | None) -> None:
    """A run of some steps (`--only`) keeps the previous run's figures of the others, each
    marked with the run it comes from: results.md always shows every figure."""
    if previous is None:
        return
    carried = record.setdefault("carried_over", {})
    for name, figure in record["figures"].items():
        before = previous.get("figures", {}).get(name)
        if _not_measured(figure) and before is not None and not _not_measured(before):
            record["figures"][name] = before
            origin = previous.get("carried_over", {}).get(name) or {
                "date": previous.get("date"),
                "commit": (previous.get("git") or {}).get("commit"),
            }
            carried[name] = origin
    for name, figure in previous.get("figures", {}).items():  # a step this run's harness does not know
        if name not in record["figures"]:
            record["figures"][name] = figure
            carried[name] = previous.get("carried_over", {}).get(name) or {"date": previous.get("date")}
    if not carried:
        del record["carried_over"]
    _ratios(record)


def load_runs(path: Path) -> list[dict[str, Any]]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return list(doc.get("runs", [])) if isinstance(doc, dict) else []


def write(out: Path, record: dict[str, Any]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    earlier = load_runs(json_path)
    carry_over(record, next((r for r in reversed(earlier) if r.get("label") == record.get("label")), None))
    runs = [r for r in earlier if r.get("label") != record.get("label")]  # the latest unlabelled run stays
    runs.append(record)
    json_path.write_text(json.dumps({"format": FORMAT, "runs": runs}, indent=2) + "\n")
    md_path.write_text(render(runs))
    written = [md_path, json_path]
    plot = plot_latency(record["figures"].get("latency"), out / "latency.png", record)
    return written + ([plot] if plot else [])


def _latency_rates(latency: Any) -> list[tuple[int, dict[str, Any]]]:
    """(offered rate, figure) of the rates measured, lowest first."""
    if not isinstance(latency, dict) or not isinstance(latency.get("rates"), dict):
        return []
    rates = [(int(rate), figure) for rate, figure in latency["rates"].items() if not _missing(figure)]
    return sorted(rates)


def plot_latency(latency: Any, path: Path, record: dict[str, Any]) -> Path | None:
    """bench/latency.png: p50/p95/p99 of the end-to-end latency against the offered rate. A
    percentile among the cards still missing when the drain time after the offer ended was up is
    drawn at that bound (they had waited at least that long), hollow."""
    rates = _latency_rates(latency)
    if not rates:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, colour in (("p50", "tab:blue"), ("p95", "tab:orange"), ("p99", "tab:red")):
        xs, ys, open_xs, open_ys = [], [], [], []
        for rate, point in rates:
            value = point["latency_ms"].get(name)
            if value is not None:
                xs.append(rate)
                ys.append(value)
            else:  # among the cards still missing: slower than the drain bound
                open_xs.append(rate)
                open_ys.append(point["drain_s"] * 1000)
        axes.plot(xs, ys, marker="o", color=colour, label=name)
        if open_xs:
            axes.scatter(open_xs, open_ys, marker="^", facecolors="none", edgecolors=colour)
    for rate, point in rates:  # once per rate that has any percentile beyond the bound
        if any(point["latency_ms"].get(p) is None for p in PCTS):
            bound = point["drain_s"]  # the least a card still missing then had waited
            axes.annotate(
                f"> {bound:.0f} s", (rate, bound * 1000), textcoords="offset points", xytext=(8, -3), fontsize=7
            )
    axes.axhline(250, color="grey", linestyle="--", linewidth=1)
    axes.text(rates[0][0], 260, "target p99 at 1,000/s: 250 ms", color="grey", fontsize=8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _pos: f"{value:,.0f}")
    axes.set_xticks([rate for rate, _ in rates])
    axes.xaxis.set_major_formatter(plain)
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.yaxis.set_major_formatter(plain)
    axes.set_xlabel("offered rate (Slack messages/s, signed webhooks)")
    axes.set_ylabel("webhook accepted -> card posted (ms)")
    commit = (record.get("git", {}).get("commit") or "?")[:9]
    axes.set_title(f"threadlink end-to-end latency ({record.get('date', '')[:10]}, {commit})", fontsize=10)
    for rate, point in rates:
        axes.annotate(
            f"{_num(point.get('cards_per_s'))} cards/s",
            (rate, axes.get_ylim()[0]),
            textcoords="offset points",
            xytext=(0, 4),
            ha="center",
            fontsize=7,
            color="dimgrey",
        )
    axes.grid(True, which="both", linewidth=0.3)
    unreached = any(point["latency_ms"].get(p) is None for _, point in rates for p in PCTS)
    axes.legend(title="hollow: not reached" if unreached else None, fontsize=8, title_fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


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
        *(
            [
                "- **Carried over** (not run this time, `--only`): "
                + ", ".join(
                    f"{name} from {origin.get('date') or '?'} (`{(origin.get('commit') or '?')[:12]}`)"
                    for name, origin in sorted(run["carried_over"].items())
                )
            ]
            if run.get("carried_over")
            else []
        ),
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
    lines += _sinks_section(figures.get("sinks"))
    lines += _section(
        "End-to-end latency (signed webhook accepted -> card posted)", figures.get("latency"), _latency_lines
    )
    lines += _section(
        "Webhook memory under hostile load (the real connectors process)",
        figures.get("webhook_memory"),
        _webhook_memory_lines,
    )
    lines += _section("Know: article suggestions (bench/know/)", figures.get("know"), _know_lines)
    lines += _section("Shop floor: MQTT into Kafka (real Mosquitto)", figures.get("mqtt"), _mqtt_lines)
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
    rate_cell = f"{_num(rate)} records/s" if rate is not None else "none: tables kept on disk"
    return [took, rate_cell, _mib(phase["peak_rss_bytes"]), _mib(phase["settled_rss_bytes"])]


def _ms(value: Any) -> str:
    return f"{value:,.0f} ms" if isinstance(value, int | float) else "-"


def _sinks_section(sinks: Any) -> list[str]:
    if not isinstance(sinks, dict):
        return []
    lines = [
        "",
        "## Slack sink (the real connectors process, against a fake Slack)",
        "",
        "| figure | rate | CPU per command | cores used | peak RSS | how it ended |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for part, title in (
        ("throughput", "throughput, limits out of the way"),
        ("per_channel", "Slack's per-channel limit (1/s)"),
    ):
        figure: Any = sinks.get(part)
        missing = _missing(figure)
        if missing:
            lines.append(f"| {title} | {missing} | | | | |")
            continue
        if part == "throughput":
            rate = f"{_num(figure['commands_per_s'])} commands/s"
            note = (
                f"{_num(figure['outcomes'])} of {_num(figure['commands'])} commands done over "
                f"{_num(figure['channels'])} channels and {_num(figure['threads'])} threads in "
                f"{_num(figure['window_s'], 1)} s (fake: {_num(figure['posts_per_s_at_fake'])} posts/s); first outcome "
                f"{_num(figure.get('startup_s'), 1)} s after the process started"
            )
        else:
            rate = f"{_num(figure['commands_per_s_all_channels_busy'])} commands/s while every channel was busy"
            note = (
                f"{_num(figure['outcomes'])} of {_num(figure['commands'])} commands; 429s from the fake: "
                f"**{_num(figure['rate_limited_429'])}**; most posts in any 1 s of one channel: "
                f"**{_num(figure['max_posts_in_1s_any_channel'])}**"
            )
        lines.append(
            f"| {title} | {rate} | {_num(figure.get('sink_cpu_ms_per_command'), 2)} ms | "
            f"{_num(figure.get('sink_cores_used'), 2)} | {_mib(figure.get('peak_rss_bytes'))} | {note} |"
        )
    figure = sinks.get("per_channel")
    if not _missing(figure):
        lines += [
            "",
            f"Per-channel limit: one hot channel got {_num(figure['hot_channel_commands'])} commands, each of the "
            f"other {_num(figure['channels'] - 1)} got {_num(figure['other_channel_commands'])}. The others were "
            f"done {_num(figure['others_done_s_median'], 1)} s (median; last {_num(figure['others_done_s_max'], 1)} s) "
            f"after the first post, the hot one after {_num(figure['hot_done_s'], 1)} s: it waits on its own lane, "
            "the others do not wait for it.",
        ]
    figure = sinks.get("ledger_restart")
    missing = _missing(figure)
    lines += ["", "| ledger entries | written in | sink serves after | peak RSS | settled RSS | redelivered skipped |"]
    lines.append("| ---: | ---: | ---: | ---: | ---: | --- |")
    if missing:
        lines.append(f"| - | {missing} | | | | |")
    else:
        statuses = figure.get("outcome_statuses", {})
        skipped = "yes" if statuses.get("redelivered") == 1 and figure.get("posts") == 1 else f"no: {statuses}"
        lines.append(
            f"| {_num(figure['ledger_entries'])} | {_num(figure['ledger_write_s'], 1)} s | "
            f"**{_num(figure['serve_s'], 1)} s** | {_mib(figure['peak_rss_bytes'])} | "
            f"{_mib(figure['settled_rss_bytes'])} | {skipped} |"
        )
    return lines


def _pair(value: Any, first: str, second: str) -> str:
    if not isinstance(value, dict):
        return "-"
    return f"{_ms(value.get(first))} / {_ms(value.get(second))}"


def _section(title: str, figure: Any, body: Callable[[dict[str, Any]], list[str]]) -> list[str]:
    """A section of a step's figure (none when the run did not have the step): its heading,
    then its body, or why it was not measured."""
    if not isinstance(figure, dict):
        return []
    missing = _missing(figure)
    return ["", f"## {title}", "", *([missing] if missing else body(figure))]


def _latency_lines(latency: dict[str, Any]) -> list[str]:
    lines = [
        f"{_num(latency['threads'])} threads in {_num(latency['channels'])} channels, each message mentions one of "
        f"{_num(latency['tickets'])} tickets already in the table (no Jira fetch); each rate offered open-loop for "
        f"{_num(latency['seconds_per_rate'])} s (10,000 messages at most). A percentile shown as `>` fell among "
        "cards not posted within the drain time after the offer ended; a rate that left a backlog is followed by "
        "a fresh deployment. Plot: [latency.png](latency.png).",
        "",
        "| offered | sent | accepted (HTTP 200) | cards posted | p50 | p95 | p99 | accepted -> command p50 / p99 "
        "| command -> post p50 / p99 | webhook answer p50 / p99 | backlog |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for rate, figure in sorted(latency.get("rates", {}).items(), key=lambda item: int(item[0])):
        missing = _missing(figure)
        if missing:
            lines.append(f"| {_num(int(rate))}/s | {missing} | | | | | | | | | |")
            continue
        bound = f"> {_num(figure['drain_s'])} s"
        cells = [_ms(figure["latency_ms"][p]) if figure["latency_ms"][p] is not None else bound for p in PCTS]
        backlog = (
            "none"
            if figure["drained"]
            else f"{_num(figure['accepted'] - figure['cards'])} cards not posted {_num(figure['drain_s'])} s after"
        )
        probe = " (probe near capacity)" if figure.get("near_capacity_probe") else ""
        lines.append(
            f"| {_num(int(rate))}/s{probe} | {_num(figure['sent_per_s'])}/s | {_num(figure['accepted_per_s'])}/s "
            f"({_num(figure['accepted'])}) | {_num(figure['cards_per_s'])}/s ({_num(figure['cards'])}) | "
            + " | ".join(f"**{c}**" if p == "p99" else c for p, c in zip(PCTS, cells, strict=True))
            + f" | {_pair(figure['to_command_ms'], 'p50', 'p99')} | {_pair(figure['command_to_post_ms'], 'p50', 'p99')}"
            f" | {_pair(figure['ack_ms'], 'p50', 'p99')} | {backlog} |"
        )
    return lines


PCTS = ("p50", "p95", "p99")


def _webhook_memory_lines(memory: dict[str, Any]) -> list[str]:
    verdict = "within" if memory["within_target"] else "**over**"
    return [
        f"{_num(memory['oversized_requests'])} unauthenticated 10 MiB requests and {_num(memory['stalled_requests'])} "
        "stalled ones (a body announced, 10 bytes sent), at once:",
        "",
        "| RSS before | peak | after | growth | target | answers |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
        f"| {_mib(memory['baseline_rss_bytes'])} | {_mib(memory['peak_rss_bytes'])} | "
        f"{_mib(memory['after_rss_bytes'])} | {memory['growth_bytes'] / 1e6:+.1f} MB ({verdict} target) | "
        f"{memory['target_growth_bytes'] / 1e6:.0f} MB | oversized: {memory['oversized_answers']}; "
        f"stalled: {memory['stalled_answers']} |",
    ]


def _mqtt_lines(mqtt: dict[str, Any]) -> list[str]:
    return [
        f"{_num(mqtt['messages'])} QoS 1 status messages queued in a persistent session, then drained:",
        "",
        "| what | messages/s |",
        "| --- | ---: |",
        f"| Mosquitto to a bare QoS 1 subscriber (the broker's limit for one client) | "
        f"{_num(mqtt['broker_drain_per_s'])} |",
        f"| MQTT source into Kafka (records topic, acks=all, PUBACK after) | {_num(mqtt['source_into_kafka_per_s'])} |",
        f"| the simulated plant publishing (QoS 1, 500 in flight) | {_num(mqtt['publish_per_s'])} |",
        "",
        f"The source runs at {mqtt['source_vs_broker']}x the broker's drain rate ({mqtt['batches']} batches, "
        f"{mqtt['source_seconds']} s).",
    ]


def _know_lines(know: dict[str, Any]) -> list[str]:
    default = know["default"]
    lines = [
        f"{default['questions']} questions, {default['answerable']} of them answered by one of the articles; "
        f"at the default min_score {default['min_score']}: **precision@3 {default['precision_at_3']}**, "
        f"hit rate@3 {default['hit_rate_at_3']}, {default['noise']} suggestion(s) for questions no article answers.",
        "",
        "| min_score | suggested | precision@3 | hit rate@3 | noise |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in know["by_threshold"]:
        lines.append(
            f"| {row['min_score']} | {row['suggested']} | {row['precision_at_3']} | {row['hit_rate_at_3']} | "
            f"{row['noise']} |"
        )
    return lines


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
    lines += [
        "",
        "| run | sink commands/s | 429s under the per-channel limit | ledger start: serves after "
        "| latency p99 at each offered rate | webhook memory growth |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for run in runs:
        figures = run["figures"]
        sinks = figures.get("sinks") if isinstance(figures.get("sinks"), dict) else {}
        throughput, limited, ledger = (sinks.get(k) or {} for k in ("throughput", "per_channel", "ledger_restart"))
        rates = _latency_rates(figures.get("latency"))
        latency = ", ".join(f"{_num(rate)}/s: {_ms(figure['latency_ms']['p99'])}" for rate, figure in rates)
        memory = figures.get("webhook_memory") or {}
        growth = memory.get("growth_bytes")
        lines.append(
            f"| {_name(run)} | {_num(throughput.get('commands_per_s'))} | {_num(limited.get('rate_limited_429'))} | "
            f"{_num(ledger.get('serve_s'), 1)} s | {latency or '-'} | "
            f"{f'{growth / 1e6:+.1f} MB' if isinstance(growth, int | float) else '-'} |"
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
        "an estimate: N / (time to serve - the first start's start-up time); within a second of the start-up "
        "time there is no replay to measure (tables are kept on disk). RSS: psutil, the worker's process "
        "tree, sampled every 0.2 s; peak during the phase, settled 3 s after it.",
        "- **Slack sink** (`bench/sinks.py`): `threadlink connectors run --only slack --no-webhooks` with a config "
        "file pointing the Slack connector at the fake Slack (`bench/fakeslack.py`: sandbox/slack_api.py's FakeSlack "
        "in a process of its own, contract checks off). PostCard commands (schemas/commands.py, keyed by thread id) "
        "are preloaded before the sink starts; rate = (outcomes - 1) / (last - first outcome), outcomes stamped with "
        "the "
        "broker's append time. CPU per command: the sink's CPU time between its first and last outcome divided by "
        "the commands done meanwhile (a figure the machine's other load barely moves). Per-channel limit: the sink "
        "keeps 1 message per channel per second with no burst, the fake answers 429 to a second post into a channel "
        "within 1 s; the most posts of a channel in any 1 s are counted from the fake's arrival times.",
        "- **Ledger start**: done entries written to the ledger partition of one thread's commands, then a command "
        "the ledger has as done and a new one on that thread; the sink serves when the fake has the new one's post "
        "(time from the process's start). The old one must be skipped (outcome `redelivered`), not posted.",
        "- **End-to-end latency** (`bench/latency.py`): `threadlink streams run` and `threadlink connectors run "
        "--only slack` (events webhook and sink, rate limits out of the way), tickets preloaded on the records topic. "
        "The load generator signs each Events API request as Slack does and sends it open-loop at the offered rate; "
        "latency = the fake's arrival time of the card's chat.postMessage - the time the generator had its HTTP 200 "
        "(both wall clock, one machine). 20 warm-up messages per deployment are not counted. A rate that leaves a "
        "backlog is followed by a fresh deployment.",
        "- **Webhook memory** (`bench/webhook_memory.py`, the load of tests/integration/webhook_load.py): RSS of "
        "`threadlink connectors run` after a warm-up, at the peak of 100 unauthenticated 10 MiB requests and 200 "
        "stalled ones sent together, and after they were answered (413 and 408).",
        "- **Bounds**: every step has a time limit (a step past it is `not measured: exceeded N s`), the whole "
        "run stops cleanly at its limit; every topic of a run (`bench-<run id>*`) is deleted at its end.",
    ]
