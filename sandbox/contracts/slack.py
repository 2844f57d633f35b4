"""Slack's published contracts, as checks the sandbox runs on what crosses its wire.

- Web API requests and responses against `slack/slack_web_openapi_v2.json` (Swagger 2.0):
  the method exists, required parameters are there, `formData`/`query` values have the
  declared type, no parameter the method does not declare, the content type is one it
  `consumes`, `blocks` is a Block Kit array; success answers match the method's 200 schema.
- Events API payloads against `slack/slack_common_event_wrapper_schema.json` and the payload
  of the matching topic in `slack/slack_events_api_async_v1.json` (e.g. `message.channels`).

Each check returns a list of `Violation`s (empty: conforms); nothing here raises on a bad
request, so a fake can record them and go on (or refuse, in strict mode).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4, DRAFT7

from sandbox.contracts import spec_file

WEB_API_SPEC = "slack/slack_web_openapi_v2.json"
EVENT_WRAPPER_SPEC = "slack/slack_common_event_wrapper_schema.json"
EVENTS_API_SPEC = "slack/slack_events_api_async_v1.json"

_WEB_URI = "urn:threadlink:slack-web-api"
_EVENTS_URI = "urn:threadlink:slack-events-api"

#: The Events API topic of a `message` event, by the event's channel_type. (The spec's bare
#: `message` topic is generated from one file-comment deletion and fits no other message.)
MESSAGE_TOPICS = {
    "channel": "message.channels",
    "group": "message.groups",
    "im": "message.im",
    "mpim": "message.mpim",
    "app_home": "message.app.home",
}

_BOOLEAN_WORDS = {"true", "false", "1", "0"}


@dataclass(frozen=True)
class Violation:
    where: str
    """What was checked, e.g. `request chat.postMessage`, `response auth.test`, `event Ev0001`."""
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


class ContractViolation(AssertionError):
    """Raised by strict sandboxes; the message lists every violation."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("; ".join(str(v) for v in violations))
        self.violations = violations


@cache
def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _errors(validator: Any, instance: Any, where: str) -> list[Violation]:
    return [
        Violation(where, f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}")
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    ]


class SlackWebApiContract:
    """The Web API spec, loaded once per process (SpecsMissing if the file is not there)."""

    def __init__(self, path: Path | None = None) -> None:
        self.spec = _load(path or spec_file(WEB_API_SPEC))
        self._registry: Registry = Registry().with_resource(_WEB_URI, DRAFT4.create_resource(self.spec))
        self._validators: dict[str, Draft4Validator] = {}

    def _validator(self, *pointer: str) -> Draft4Validator:
        ref = f"{_WEB_URI}#/{_pointer(*pointer)}"
        if ref not in self._validators:
            self._validators[ref] = Draft4Validator({"$ref": ref}, registry=self._registry)
        return self._validators[ref]

    def operation(self, method: str, http_method: str = "post") -> tuple[str, dict[str, Any]] | None:
        """(verb, operation) of a Web API method. Slack takes GET and POST for every method, so
        when the spec documents the other verb, that one is used."""
        ops = self.spec["paths"].get(f"/{method}")
        if not ops:
            return None
        verb = http_method.lower() if http_method.lower() in ops else next(iter(ops))
        return verb, ops[verb]

    def check_request(
        self,
        method: str,
        *,
        params: Mapping[str, Any],
        headers: Mapping[str, str],
        http_method: str = "POST",
        content_type: str | None = None,
    ) -> list[Violation]:
        where = f"request {method}"
        found = self.operation(method, http_method)
        if found is None:
            return [Violation(where, "no such Web API method in the spec")]
        _verb, op = found
        problems: list[Violation] = []
        json_body = content_type == "application/json"
        if content_type and content_type not in op.get("consumes", []):
            problems.append(Violation(where, f"content type {content_type} not accepted (consumes {op['consumes']})"))
        declared = {"token"}
        for param in op.get("parameters", []):
            name, place = param["name"], param["in"]
            declared.add(name)
            # Some operations (chat.getPermalink) still declare the token as a query or form
            # parameter; Slack takes it in the Authorization header for every method all the same.
            if place == "header" or name == "token":
                if name == "token" and param.get("required") and not _has_token(headers, params):
                    problems.append(Violation(where, "no token (Authorization: Bearer, or a token parameter)"))
                continue
            if name not in params:
                if param.get("required"):
                    problems.append(Violation(where, f"required parameter {name!r} is missing"))
                continue
            problem = _type_problem(params[name], param.get("type", "string"), json_body=json_body)
            if problem:
                problems.append(Violation(where, f"parameter {name!r} {problem}"))
            elif name == "blocks":
                problems.extend(self._check_blocks(params[name], where))
        problems.extend(
            Violation(where, f"parameter {name!r} is not one {method} declares")
            for name in params
            if name not in declared
        )
        return problems

    def _check_blocks(self, value: Any, where: str) -> list[Violation]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return [Violation(where, "parameter 'blocks' is not a JSON string")]
        return _errors(self._validator("definitions", "blocks"), value, f"{where} blocks")

    def check_response(self, method: str, body: Any, *, http_method: str = "POST") -> list[Violation]:
        """A success answer (`ok: true`) against the method's 200 schema, where it has one.
        Error answers are not checked: the spec's error enums predate many codes Slack sends."""
        found = self.operation(method, http_method)
        if found is None or not isinstance(body, dict) or body.get("ok") is not True:
            return []
        verb, op = found
        if "schema" not in op.get("responses", {}).get("200", {}):
            return []
        validator = self._validator("paths", f"/{method}", verb, "responses", "200", "schema")
        return _errors(validator, body, f"response {method}")


class SlackEventsContract:
    """The Events API wrapper schema and the Events API (AsyncAPI 1.2) spec."""

    def __init__(self, wrapper_path: Path | None = None, events_path: Path | None = None) -> None:
        self.wrapper = _load(wrapper_path or spec_file(EVENT_WRAPPER_SPEC))
        self.events = _load(events_path or spec_file(EVENTS_API_SPEC))
        self._wrapper_validator = Draft7Validator(self.wrapper)
        self._registry: Registry = Registry().with_resource(_EVENTS_URI, DRAFT7.create_resource(self.events))
        self._topic_validators: dict[str, Draft7Validator] = {}

    def topic_of(self, payload: Mapping[str, Any]) -> str | None:
        """The spec topic an `event_callback` payload belongs to, if the spec has it."""
        event = payload.get("event")
        if not isinstance(event, dict):
            return None
        kind = event.get("type")
        topic = MESSAGE_TOPICS.get(event.get("channel_type", "")) if kind == "message" else str(kind).replace("_", ".")
        return topic if topic in self.events.get("topics", {}) else None

    def check_event(self, payload: Any) -> list[Violation]:
        where = f"event {payload.get('event_id') if isinstance(payload, dict) else '?'}"
        if not isinstance(payload, dict):
            return [Violation(where, "payload is not a JSON object")]
        if payload.get("type") == "url_verification":
            missing = [k for k in ("token", "challenge") if not isinstance(payload.get(k), str)]
            return [Violation(where, f"url_verification without {k!r}") for k in missing]
        problems = _errors(self._wrapper_validator, payload, f"{where} (event wrapper)")
        topic = self.topic_of(payload)
        if topic is None:
            problems.append(Violation(where, "no Events API topic for this event (or no channel_type on a message)"))
            return problems
        if topic not in self._topic_validators:
            ref = f"{_EVENTS_URI}#/{_pointer('topics', topic, 'subscribe', 'payload')}"
            self._topic_validators[topic] = Draft7Validator({"$ref": ref}, registry=self._registry)
        problems.extend(_errors(self._topic_validators[topic], payload, f"{where} ({topic})"))
        return problems


def _has_token(headers: Mapping[str, str], params: Mapping[str, Any]) -> bool:
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    return (auth.lower().startswith("bearer ") and bool(auth[7:].strip())) or bool(params.get("token"))


def _type_problem(value: Any, declared: str, *, json_body: bool) -> str | None:
    """Why `value` is not a `declared` (Swagger type) parameter, or None. Form and query values
    are strings on the wire; a JSON body may carry them natively (and arrays/objects for the
    JSON-encoded string parameters such as `blocks`)."""
    if declared == "string":
        ok = isinstance(value, str) or (json_body and isinstance(value, list | dict))
    elif declared == "boolean":
        ok = isinstance(value, bool) or (isinstance(value, str) and value.lower() in _BOOLEAN_WORDS)
    elif declared == "integer":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value.lstrip("-").isdigit()
        )
    elif declared == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(value, str):
            try:
                float(value)
                ok = True
            except ValueError:
                ok = False
    else:
        ok = True
    return None if ok else f"should be {declared}, got {value!r:.40}"
