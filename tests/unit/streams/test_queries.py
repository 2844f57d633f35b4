"""The answers of the links queries (streams/queries.py), from the flows' state alone."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from schemas.records import RecordRef, TicketRecord
from schemas.social import ThreadRef
from schemas.topics import STREAM_PARTITIONS
from streams.queries import partition_of, records_of, threads_of
from streams.state import Card, Escalation, RecordState, ThreadState, Waiting
from threadlink.links import format_records, format_threads


def thread(channel: str, ts: str) -> ThreadRef:
    return ThreadRef(platform="slack", workspace="T1", channel=channel, thread_id=ts)


def record_state() -> RecordState:
    ticket = TicketRecord(ref=RecordRef(system="jira", key="Q-1"), title="Checkout fails", status="Open", version=3)
    public, private, shared = thread("C1", "1.1"), thread("G1", "2.2"), thread("X1", "3.3")
    return RecordState(
        record=ticket,
        cards={
            public.id: Card(thread=public, place_visibility="internal", status="posted", mentioned_at=20),
            private.id: Card(thread=private, place_visibility="restricted", status="hidden", mentioned_at=30),
        },
        waiting=[Waiting(thread=shared, message_id="3.3", place_visibility="public", mentioned_at=10)],
    )


def test_a_record_s_threads_come_most_recent_first_with_the_waiting_mentions() -> None:
    answer = threads_of("jira:Q-1", record_state(), "restricted")
    assert answer["title"] == "Checkout fails"
    assert [(t["thread"], t["status"]) for t in answer["threads"]] == [
        ("slack:T1:G1:2.2", "hidden"),
        ("slack:T1:C1:1.1", "posted"),
        ("slack:T1:X1:3.3", "waiting"),
    ]


def test_an_audience_sees_only_threads_of_places_no_narrower_than_itself() -> None:
    internal = threads_of("jira:Q-1", record_state(), "internal")
    assert {t["thread"] for t in internal["threads"]} == {"slack:T1:C1:1.1", "slack:T1:X1:3.3"}
    public = threads_of("jira:Q-1", record_state(), "public")
    assert {t["thread"] for t in public["threads"]} == {"slack:T1:X1:3.3"}


def test_a_thread_s_records_say_how_it_touches_each_one() -> None:
    here = thread("C1", "1.1")
    state = ThreadState(
        named={"1.1": ["jira:Q-1"], "1.2": ["jira:Q-1", "jira:Q-2"]},
        escalation=Escalation(status="opened", target="jira", thread=here, ticket=RecordRef(system="jira", key="Q-9")),
        suggested=["wordpress:faq-7", "jira:Q-2"],
    )
    answer = records_of(here.id, state)
    roles = {r["record"]: (r["roles"], r["named_by"]) for r in answer["records"]}
    assert roles == {
        "jira:Q-1": (["mentioned"], ["1.1", "1.2"]),
        "jira:Q-2": (["mentioned", "suggested"], ["1.2"]),
        "jira:Q-9": (["ticket"], []),
        "wordpress:faq-7": (["suggested"], []),
    }
    assert answer["escalation"]["ticket"] == "jira:Q-9"
    lines = format_records(answer)
    assert lines[1].startswith("  escalation: opened jira:Q-9") and lines[-1] == "4 record(s)"


def test_the_printed_threads_name_the_record_and_count_the_threads() -> None:
    lines = format_threads(threads_of("jira:Q-1", record_state(), "restricted"))
    assert lines[0] == "jira:Q-1 Checkout fails" and lines[-1] == "3 thread(s)"


def test_a_key_s_partition_is_the_one_the_producers_pick() -> None:
    for key in ("jira:Q-1", "slack:T1:C1:1.1", "github:octo/repo#12"):
        partitions = list(range(STREAM_PARTITIONS))
        assert partition_of(key) == DefaultPartitioner()(key.encode(), partitions, partitions)
