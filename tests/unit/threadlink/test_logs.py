"""Log lines as a log pipeline reads them (`log_format: json`): one JSON object per line, with
the ids of the event being handled; and dead letters that keep the original's trace."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from schemas.deadletters import DeadLetter
from threadlink.logs import handling, logging_config

pytestmark = pytest.mark.unit

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The process's logging as `log_format: json` configures it, written to a buffer."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("kafka").level)
    stream = io.StringIO()
    config = logging_config("info", "json")
    config["handlers"]["stderr"]["stream"] = stream
    logging.config.dictConfig(config)
    yield stream
    root.handlers[:] = saved[0]  # pytest's own capture handlers, as they were
    root.setLevel(saved[1])
    logging.getLogger("kafka").setLevel(saved[2])


def test_a_json_line_carries_the_ids_of_what_is_being_handled(json_log: io.StringIO) -> None:
    log = logging.getLogger("threadlink.test")
    with handling("slack:Ev123", TRACEPARENT):
        log.warning("card refused: %s", "not_in_channel")
    log.info("between events")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second, third = (json.loads(line) for line in json_log.getvalue().splitlines())
    assert first == {
        "ts": first["ts"],
        "level": "warning",
        "logger": "threadlink.test",
        "message": "card refused: not_in_channel",
        "event_id": "slack:Ev123",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }
    assert "event_id" not in second and "trace_id" not in second
    assert third["level"] == "error" and "ValueError: boom" in third["exception"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("content-type", b"application/cloudevents+json"), ("traceparent", TRACEPARENT.encode())], TRACEPARENT),
        ({"traceparent": TRACEPARENT.encode()}, TRACEPARENT),
        ([("traceparent", b"not-a-trace")], None),
        (None, None),
    ],
)
def test_a_dead_letter_keeps_the_originals_trace(headers: object, expected: str | None) -> None:
    record = SimpleNamespace(topic="t", partition=0, offset=7, key=b"k", value=b"{}", headers=headers)
    letter = DeadLetter.of_record(record, error_kind="fatal", reason="r", consumer="sink.slack")
    assert letter.traceparent == expected
