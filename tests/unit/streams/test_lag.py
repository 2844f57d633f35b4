"""The streams worker's lag per input topic, from end and committed offsets."""

from __future__ import annotations

from faust.types import TP

from streams.lag import lag_by_topic


def test_lag_is_end_minus_committed_per_topic_and_unknown_topics_are_left_out() -> None:
    ends = {TP("social", 0): 100, TP("social", 1): 7, TP("records", 0): 50, TP("changelog", 0): 999}
    committed = {TP("social", 0): 90, TP("social", 1): 7, TP("records", 0): None}
    assert lag_by_topic(ends, committed, ["social", "records", "outcomes"]) == {
        "social": 10,
        "records": 50,  # nothing committed yet: the whole partition is still to do
        "outcomes": 0,
    }


def test_a_commit_past_the_end_never_makes_lag_negative() -> None:
    assert lag_by_topic({TP("t", 0): 5}, {TP("t", 0): 6}, ["t"]) == {"t": 0}
