"""Logging: plain lines for people, or one JSON object per line for a log pipeline
(`log_format: json`), each carrying the id and trace of the event being handled when there is
one, so a dead letter, a log line and a trace can be found from one another.

What is being handled is bound with `handling(event_id, traceparent)` (a context variable: each
asyncio task sees its own): the flows bind each event they decide on, the sinks each command
they carry out.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from schemas.trace import trace_id

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_handling: contextvars.ContextVar[tuple[str | None, str | None] | None] = contextvars.ContextVar(
    "threadlink_handling", default=None
)


@contextlib.contextmanager
def handling(event_id: str | None, traceparent: str | None) -> Iterator[None]:
    token = _handling.set((event_id, trace_id(traceparent)))
    try:
        yield
    finally:
        _handling.reset(token)


def bind(event_id: str | None, traceparent: str | None) -> None:
    """For a task of its own that handles one thing at a time: what it handles from now on."""
    _handling.set((event_id, trace_id(traceparent)))


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "event_id"?, "trace_id"?, "exception"?}` per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = _handling.get()
        if current is not None:
            event_id, trace = current
            line |= {key: value for key, value in (("event_id", event_id), ("trace_id", trace)) if value}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def logging_config(level: str, log_format: str) -> dict[str, Any]:
    """A dictConfig for the process (Faust's worker takes it as is)."""
    formatter = {"()": f"{__name__}.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"threadlink": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "threadlink"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        # kafka-python is chatty at INFO about every connection.
        "loggers": {"kafka": {"level": max(logging.WARNING, logging.getLevelName(level.upper()))}},
    }
