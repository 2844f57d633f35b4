"""The Matrix specification's OpenAPI files (`matrix/api/client-server/*.yaml`,
`matrix/api/application-service/*.yaml`) and event schemas (`matrix/event-schemas/schema/`) as a
checker of what threadlink sends a homeserver and what a homeserver sends threadlink.

The spec is split over many YAML files that `$ref` each other by relative path; each file is a
resource of a `referencing` registry under its own `file://` URI, loaded when first referenced.
OpenAPI 3.1 schemas are JSON Schema 2020-12; formats (`mx-room-id`, ...) are not checked, their
`pattern`s are.

Checked for a request: the operation exists (path under the file's `basePath`, method), its path
parameters match their schemas, its JSON body matches the requestBody schema, and for
`PUT /rooms/{roomId}/send/{eventType}/{txnId}` the body, as the content of an event of that type,
matches the event's schema (`m.room.message$<msgtype>.yaml` before `m.room.message.yaml`), with
`m.relates_to` checked against `definitions/m.relates_to.yaml`. For an application service
transaction: every event matches `client_event.yaml` and its own type's schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from sandbox.contracts import Violation, json_path, spec_file

#: The spec files threadlink's traffic goes through, and the base path each file's servers name.
FILES = {
    "matrix/api/client-server/room_send.yaml": "/_matrix/client/v3",
    "matrix/api/client-server/redaction.yaml": "/_matrix/client/v3",
    "matrix/api/client-server/room_state.yaml": "/_matrix/client/v3",
    "matrix/api/client-server/rooms.yaml": "/_matrix/client/v3",
    "matrix/api/client-server/joining.yaml": "/_matrix/client/v3",
    "matrix/api/client-server/whoami.yaml": "/_matrix/client/v3",
    "matrix/api/application-service/transactions.yaml": "/_matrix/app/v1",
}
_METHODS = ("get", "put", "post", "delete")


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _retrieve(uri: str) -> Resource[Any]:
    if not uri.startswith("file://"):
        raise LookupError(f"only spec files are referenced, not {uri}")
    return Resource.from_contents(_load(Path(uri.removeprefix("file://"))), default_specification=DRAFT202012)


@dataclass(frozen=True)
class _Route:
    method: str
    regex: re.Pattern[str]
    operation: Mapping[str, Any]
    base: str


class MatrixContract:
    """Checks Matrix traffic against the spec. Build with `matrix_contract()` (cached)."""

    def __init__(self) -> None:
        self._registry: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
        self._routes: list[_Route] = []
        for relative, base_path in FILES.items():
            path = spec_file(relative)
            spec = _load(path)
            base = path.resolve().as_uri()
            for template, item in spec.get("paths", {}).items():
                # An empty {stateKey} may drop its slash: the parameter may be empty.
                pattern = re.sub(r"\\\{([^}/]+)\\\}", r"(?P<\1>[^/]*)", re.escape(base_path + template))
                for method in _METHODS:
                    if method in item:
                        self._routes.append(_Route(method.upper(), re.compile(f"^{pattern}/?$"), item[method], base))
        self._events = spec_file("matrix/event-schemas/schema/m.room.message.yaml").parent

    def _errors(self, schema: Mapping[str, Any], instance: Any, base: str) -> list[str]:
        # The wrapper gets an id of its own next to `base`, so relative refs resolve from there
        # (the id of `base` itself would make a `$ref` to that file point back at the wrapper).
        rooted = {**schema, "$id": base.rsplit("/", 1)[0] + "/__threadlink_check__.json"}
        validator = Draft202012Validator(rooted, registry=self._registry)
        found = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        return [f"{json_path(e.absolute_path)}: {e.message}" for e in found]

    def _route(self, method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
        for route in self._routes:
            match = route.regex.match(path)
            if match and route.method == method.upper():
                return route, match.groupdict()
        return None

    def check_request(self, method: str, path: str, body: Any) -> list[Violation]:
        """`path` is the raw, unquoted path (e.g. `/_matrix/client/v3/rooms/!r:hs/send/...`)."""
        found: list[Violation] = []

        def violation(where: str, message: str) -> None:
            found.append(Violation(method.upper(), path, where, message))

        routed = self._route(method, path)
        if routed is None:
            violation("request.path", "no such operation in the Matrix spec")
            return found
        route, params = routed
        for param in route.operation.get("parameters", []):
            if param.get("in") != "path" or param["name"] not in params:
                continue
            value = params[param["name"]]
            if value == "" and param["name"] != "stateKey":
                violation("request.path", f"{param['name']} is empty")
            for message in self._errors(param.get("schema", {}), value, route.base):
                violation("request.path", f"{param['name']}{message.removeprefix('$')}")
        request_body = route.operation.get("requestBody")
        if request_body is None:
            if body is not None:
                violation("request.body", f"{route.operation.get('operationId')} takes no body")
            return found
        if body is None:
            if request_body.get("required"):
                violation("request.body", f"{route.operation.get('operationId')} requires a body")
            return found
        schema = (request_body.get("content", {}).get("application/json") or {}).get("schema")
        if schema is not None:
            for message in self._errors(schema, body, route.base):
                violation("request.body", message)
        if route.operation.get("operationId") == "sendMessage" and isinstance(body, Mapping):
            for message in self.event_errors({"type": params.get("eventType", ""), "content": body}):
                violation("request.body", message)
        if route.operation.get("operationId") == "sendTransaction" and isinstance(body, Mapping):
            for index, event in enumerate(body.get("events") or []):
                for message in self.event_errors(event, complete=True):
                    violation("request.body", f"$.events[{index}]{message.removeprefix('$')}")
        return list(dict.fromkeys(found))

    def check_response(self, method: str, path: str, status: int, body: Any) -> list[Violation]:
        """A 2xx answer matches its documented schema; an error answer is a standard error."""
        routed = self._route(method, path)
        if routed is None:
            return [Violation(method.upper(), path, "response.status", "no such operation in the Matrix spec")]
        route, _ = routed
        if status >= 400:
            error = self._events.parent.parent / "api/client-server/definitions/errors/error.yaml"
            return [
                Violation(method.upper(), path, "response.body", message)
                for message in self._errors({"$ref": error.name}, body, error.as_uri())
            ]
        response = route.operation.get("responses", {}).get(str(status))
        if response is None:
            return [Violation(method.upper(), path, "response.status", f"{status} is not documented")]
        schema = ((response.get("content") or {}).get("application/json") or {}).get("schema")
        if schema is None:
            return []
        return [
            Violation(method.upper(), path, "response.body", message)
            for message in self._errors(schema, body, route.base)
        ]

    def event_errors(self, event: Mapping[str, Any], *, complete: bool = False) -> list[str]:
        """How an event breaks its type's schema. A sent event (`complete` False) has only its
        type and content; the fields the homeserver adds are filled in to check the rest."""
        kind = event.get("type")
        content = event.get("content")
        if not isinstance(kind, str) or not isinstance(content, Mapping):
            return ["$: an event needs a type and a content object"]
        problems: list[str] = []
        if complete:
            client_event = self._events.parent.parent / "api/client-server/definitions/client_event.yaml"
            problems += self._errors({"$ref": client_event.name}, event, client_event.as_uri())
        else:
            event = {
                "event_id": "$sent",
                "sender": "@sender:example.org",
                "origin_server_ts": 1,
                "room_id": "!room:example.org",
                **event,
            }
        schema = self._event_schema(kind, content)
        if schema is not None:
            problems += self._errors({"$ref": schema.name}, event, schema.as_uri())
        relation = content.get("m.relates_to")
        if relation is not None:
            definition = self._events.parent.parent / "api/client-server/definitions/m.relates_to.yaml"
            problems += [
                f"$.content.m.relates_to{m.removeprefix('$')}"
                for m in self._errors({"$ref": definition.name}, relation, definition.as_uri())
            ]
        return problems

    def _event_schema(self, kind: str, content: Mapping[str, Any]) -> Path | None:
        msgtype = content.get("msgtype")
        candidates = [f"{kind}${msgtype}.yaml"] if isinstance(msgtype, str) else []
        candidates.append(f"{kind}.yaml")
        for name in candidates:
            path = self._events / name
            if "/" not in name and path.is_file():
                return path
        return None


@cache
def matrix_contract() -> MatrixContract:
    """The Matrix spec's contract, loaded on first use (SpecsMissing if the files are absent)."""
    return MatrixContract()
