"""Queries over the links, as an operator uses them: two real `threadlink streams run` workers
of one app on the real broker, records and messages produced onto the topics, and every answer
asked of one worker, which forwards what the other owns (streams/queries.py), over HTTP and
through `threadlink links`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.demo import free_port
from schemas import events
from schemas.commands import Command, PostCard
from schemas.envelope import Envelope
from schemas.records import RecordRef, TicketRecord
from schemas.social import Author, SocialMessage, ThreadRef
from schemas.topics import STREAM_PARTITIONS
from schemas.visibility import Visibility
from tests.integration.kafka_helpers import TopicTail, partition_of, produce, wait_for
from threadlink.config import Settings
from threadlink.launcher import ChildProcesses, write_config
from threadlink.topics_admin import apply_topics

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

TICKETS = 12


def ticket(n: int) -> tuple[str, Envelope[TicketRecord]]:
    record = TicketRecord(
        ref=RecordRef(system="jira", key=f"LNK-{n}"),
        title=f"Ticket {n}",
        status="Open",
        version=1,
        url=f"https://jira.example/browse/LNK-{n}",
    )
    envelope = Envelope.wrap(
        record, type=events.RECORD_UPSERTED.format(kind="ticket"), source_system="jira", subject=record.ref.id
    )
    return record.ref.id, envelope


def message(channel: str, ts: str, text: str, visibility: Visibility = "internal") -> tuple[str, Envelope[Any]]:
    thread = ThreadRef(platform="slack", workspace="T1", channel=channel, thread_id=ts)
    data = SocialMessage(thread=thread, message_id=ts, author=Author(id="U1"), text=text, channel_visibility=visibility)
    envelope = Envelope.wrap(
        data, type=events.SOCIAL_MESSAGE.format(action="posted"), source_system="slack", subject=thread.id
    )
    return thread.id, envelope


@pytest.fixture(scope="module")
def workers(kafka_bootstrap: str, namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two workers of one app, each with its own state and web port; their URLs."""
    run_dir: Path = tmp_path_factory.mktemp("links")
    ns = f"{namespace}-links"
    urls, pair = [], []
    for name, preferred in (("a", 16170), ("b", 16171)):
        port = free_port(preferred)
        settings = Settings(
            kafka={"bootstrap_servers": kafka_bootstrap, "namespace": ns},
            streams={"app_id": ns, "web_port": port, "state_dir": str(run_dir / name / "state")},
            # Configured for their commands topic only: no connector runs here.
            connectors={
                "slack": {"signing_secret": "unused", "bot_token": "xoxb-unused"},
                "jira": {"base_url": "http://127.0.0.1:9", "email": "x@y", "api_token": "u", "webhook_secret": "u"},
            },
        )
        if name == "a":
            apply_topics(settings)
        pair.append(ChildProcesses(write_config(settings, run_dir / f"{name}.yaml"), run_dir / name))
        urls.append(f"http://127.0.0.1:{port}")
    topics = settings.kafka.topics
    produce(kafka_bootstrap, topics.records, (ticket(n) for n in range(1, TICKETS + 1)))
    for children in pair:
        children.start("streams", "streams", "run")
    try:
        # Both own partitions: a query asked of either must be forwarded for some keys.
        def both_own_partitions() -> bool:
            for children in pair:
                children.check_alive()
            return all(owned(url) > 0 for url in urls)

        wait_for(both_own_partitions, timeout_s=180, what="both workers to own partitions")
        cards = TopicTail(kafka_bootstrap, topics.commands("slack"), Command)
        produce(
            kafka_bootstrap,
            topics.social_events,
            [
                message("CPUB", f"1.{n:06d}", f"is LNK-{n} done? and LNK-{n % TICKETS + 1}")
                for n in range(1, TICKETS + 1)
            ]
            + [message("GPRIV", "2.000001", "private talk about LNK-1", visibility="restricted")],
        )
        wait_for(
            lambda: len({c.data.in_reply_to for c in cards.read() if isinstance(c.data, PostCard)}) >= TICKETS + 1,
            timeout_s=120,
            what="a card for every message",
        )
        yield urls
    finally:
        for children in pair:
            children.stop()


def owned(url: str) -> int:
    try:
        return int(httpx.get(f"{url}/healthz", timeout=2).json()["partitions"])
    except (httpx.HTTPError, ValueError, KeyError):
        return 0


def ask(url: str, path: str, **params: str) -> httpx.Response:
    def once() -> list[httpx.Response] | None:
        response = httpx.get(f"{url}{path}", params=params, timeout=10)
        return None if response.status_code == 503 else [response]  # 503: a rebalance, for a moment

    answered: list[httpx.Response] = wait_for(once, timeout_s=60, what=f"{path} to answer")
    return answered[0]


def test_any_worker_answers_which_threads_discuss_each_record_forwarding_to_the_owner(workers: list[str]) -> None:
    partitions = {partition_of(f"jira:LNK-{n}", STREAM_PARTITIONS) for n in range(1, TICKETS + 1)}
    assert len(partitions) > 1, "the records should spread over partitions of both workers"
    for url in workers:
        for n in range(2, TICKETS + 1):
            response = ask(url, "/links/threads", record=f"jira:LNK-{n}")
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["title"] == f"Ticket {n}"
            assert answer["url"] == f"https://jira.example/browse/LNK-{n}"
            # Named by its own message and by the one before it; both in the same public channel.
            named_in = {f"slack:T1:CPUB:1.{n:06d}", f"slack:T1:CPUB:1.{n - 1:06d}"}
            assert {t["thread"] for t in answer["threads"]} == named_in, json.dumps(answer)
            assert all(t["status"] == "requested" for t in answer["threads"])


def test_a_record_s_threads_leave_out_places_narrower_than_the_audience(workers: list[str]) -> None:
    everyone = ask(workers[0], "/links/threads", record="jira:LNK-1").json()
    assert "slack:T1:GPRIV:2.000001" in {t["thread"] for t in everyone["threads"]}
    public = ask(workers[1], "/links/threads", record="jira:LNK-1", audience="internal").json()
    assert "slack:T1:GPRIV:2.000001" not in {t["thread"] for t in public["threads"]}
    assert f"slack:T1:CPUB:1.{1:06d}" in {t["thread"] for t in public["threads"]}


def test_any_worker_answers_which_records_a_thread_touches(workers: list[str]) -> None:
    for url in workers:
        for n in range(1, TICKETS + 1):
            thread = f"slack:T1:CPUB:1.{n:06d}"
            answer = ask(url, "/links/records", thread=thread).json()
            assert answer["thread"] == thread
            assert {r["record"] for r in answer["records"]} == {f"jira:LNK-{n}", f"jira:LNK-{n % TICKETS + 1}"}
            assert all(r["roles"] == ["mentioned"] and r["named_by"] == [f"1.{n:06d}"] for r in answer["records"])


def test_links_queries_answer_bad_questions_with_a_clear_4xx(workers: list[str]) -> None:
    unknown = ask(workers[0], "/links/threads", record="jira:NOPE-404")
    assert unknown.status_code == 404 and "NOPE-404" in unknown.json()["error"]
    assert ask(workers[1], "/links/records", thread="slack:T1:C0:0.0").status_code == 404
    missing = httpx.get(f"{workers[0]}/links/threads", timeout=10)
    assert missing.status_code == 400 and "record" in missing.json()["error"]
    assert httpx.get(f"{workers[1]}/links/records", timeout=10).status_code == 400
    bad = ask(workers[0], "/links/threads", record="jira:LNK-1", audience="everyone")
    assert bad.status_code == 400 and "audience" in bad.json()["error"]


def links_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threadlink", "links", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_threadlink_links_prints_the_answers_for_a_person_and_as_json(workers: list[str]) -> None:
    shown = links_cli("record", "jira:LNK-3", "--worker", workers[1])
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == "jira:LNK-3 Ticket 3"
    assert "slack:T1:CPUB:1.000003" in shown.stdout and shown.stdout.rstrip().endswith("2 thread(s)")

    as_json = links_cli("thread", "slack:T1:CPUB:1.000003", "--worker", workers[0], "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert {r["record"] for r in json.loads(as_json.stdout)["records"]} == {"jira:LNK-3", "jira:LNK-4"}

    unknown = links_cli("record", "jira:NOPE-1", "--worker", workers[0])
    assert unknown.returncode == 1 and "no mention of record 'jira:NOPE-1'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def table_keys(url: str, table: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    line = next(
        (ln for ln in text.splitlines() if ln.startswith(f'threadlink_stream_table_keys{{table="{table}"}}')), ""
    )
    return float(line.split()[-1]) if line else 0.0


def test_the_workers_table_sizes_add_up_to_what_the_flows_hold(workers: list[str]) -> None:
    # RocksDB's estimate of the keys on each worker's own partitions: the tickets' and the
    # threads' states (the gauge is refreshed every 30 s).
    wait_for(
        lambda: (
            sum(table_keys(url, "records") for url in workers) >= TICKETS
            and sum(table_keys(url, "threads") for url in workers) >= TICKETS
        ),
        timeout_s=120,
        interval_s=2,
        what="the table-size gauges",
    )
