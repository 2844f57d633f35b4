"""Reading what platforms send: the one strict JSON parser of every source, and epoch times
checked for range. Each raises `InvalidPayload` (a SkippableError, answered 400), never a
RecursionError, UnicodeError or OverflowError that would be answered 5xx and redelivered.

orjson parses strictly: it refuses NaN and Infinity, numbers out of a double's range, lone
surrogates (`"\\ud800"`) and invalid UTF-8, and it stops at 1024 levels of nesting without
recursing in Python. On top of that, `MAX_JSON_DEPTH` is checked without recursion.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson

from connectors.errors import SkippableError
from connectors.runtime.limits import MAX_JSON_DEPTH

#: 0001-01-01 .. 9999-12-31 in epoch seconds: what a datetime can hold.
EARLIEST_EPOCH_S = -62_135_596_800
LATEST_EPOCH_S = 253_402_300_799


class InvalidPayload(SkippableError):
    """The body cannot be understood, and never will be: answered 400, nothing is published."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=400)


def parse_json(body: bytes | str, *, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON document in `body`; `what` names it in the error ("slack events body")."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(f"{what} is not JSON ({_short(exc)})") from None
    if _depth_exceeds(document, max_depth):
        raise InvalidPayload(f"{what} nests deeper than {max_depth} levels")
    return document


def parse_json_object(body: bytes | str, *, what: str) -> dict[str, Any]:
    document = parse_json(body, what=what)
    if not isinstance(document, dict):
        raise InvalidPayload(f"{what} is not a JSON object")
    return document


def epoch_time(value: Any, *, what: str, unit_s: float = 1.0) -> datetime:
    """`value` (a number, or a numeric string, counting `unit_s` seconds: 0.001 for Jira's
    milliseconds) as an aware UTC datetime. NaN, infinities and times outside the years
    1..9999 raise InvalidPayload instead of ValueError or OverflowError."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidPayload(f"{what} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise InvalidPayload(f"{what} is not a number") from None
    seconds = number * unit_s
    if not math.isfinite(seconds) or not EARLIEST_EPOCH_S <= seconds <= LATEST_EPOCH_S:
        raise InvalidPayload(f"{what} is out of range for a time")
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):  # the platform's C library may allow less
        raise InvalidPayload(f"{what} is out of range for a time") from None


def iso_time(value: Any) -> datetime | None:
    """An ISO 8601 string (`2024-01-17T12:34:00Z`, `...000+0000`) as an aware datetime (UTC when
    it names no zone); None for anything else, so a missing or odd time is just unknown."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _depth_exceeds(document: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _short(exc: Exception) -> str:
    return str(exc).split(":", 1)[0][:80]
