"""schemas.trace: W3C traceparent hops."""

from __future__ import annotations

import pytest

from schemas.trace import TRACEPARENT_RE, child_traceparent, new_traceparent, trace_id

pytestmark = pytest.mark.unit

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_child_keeps_the_trace_and_flags_with_a_new_span() -> None:
    child = child_traceparent(PARENT)

    assert TRACEPARENT_RE.match(child)
    assert trace_id(child) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child.split("-")[2] != "00f067aa0ba902b7"
    assert child.endswith("-01")


def test_each_child_is_its_own_span() -> None:
    assert child_traceparent(PARENT) != child_traceparent(PARENT)


@pytest.mark.parametrize(
    "garbage",
    [None, "", "garbage", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", PARENT.upper(), PARENT + "-x"],
)
def test_garbage_starts_a_new_trace(garbage: str | None) -> None:
    child = child_traceparent(garbage)

    assert TRACEPARENT_RE.match(child)
    assert trace_id(child) != trace_id(PARENT)


def test_new_traces_differ() -> None:
    assert trace_id(new_traceparent()) != trace_id(new_traceparent())
