"""Jira Cloud's published REST contract (OpenAPI 3, `jira/platform-swagger.v3.json`) as a checker
of requests and responses: what the fake Jira receives and what it answers.

The spec is large (1.7 MB): it is read once, on first use, and shared (`jira_contract()`).
`$ref`s (`#/components/schemas/...`) resolve through a `referencing` registry holding the spec.
OpenAPI 3.0 schemas are draft-4 JSON Schema plus `nullable` and `readOnly`; both are honoured
(a read-only property in a request body is a violation). Formats are not checked: Jira's own
timestamps (`2024-01-17T12:34:00.000+0000`) are not RFC 3339.

Comment bodies: the spec leaves `Comment.body` untyped and says in prose that v3 takes Atlassian
Document Format; `adf_problems()` checks that structure (the parts of the ADF schema threadlink
uses) so a plain-string body is caught as Jira Cloud would refuse it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from jsonschema import Draft4Validator, ValidationError, validators
from referencing import Registry
from referencing.jsonschema import DRAFT4

from sandbox.contracts import ContractViolation, Violation, json_path, spec_file

__all__ = ["ContractViolation", "JiraContract", "Violation", "adf_problems", "jira_contract"]

SPEC = "jira/platform-swagger.v3.json"
_BASE_URI = "urn:threadlink:jira-platform-v3"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    operation_id: str
    spec: Mapping[str, Any] = field(repr=False)
    path_params: Mapping[str, str] = field(default_factory=dict)

    @property
    def parameters(self) -> list[Mapping[str, Any]]:
        return list(self.spec.get("parameters", []))


def _nullable(base: Any) -> Any:
    def check(validator: Any, value: Any, instance: Any, schema: Mapping[str, Any]) -> Any:
        if instance is None and schema.get("nullable") is True:
            return
        yield from base(validator, value, instance, schema)

    return check


def _read_only_in_request(validator: Any, read_only: Any, instance: Any, schema: Any) -> Any:
    if read_only is True:
        yield ValidationError("is read-only (set by Jira); it must not be sent in a request")


_ResponseValidator = validators.extend(
    Draft4Validator,
    {"type": _nullable(Draft4Validator.VALIDATORS["type"]), "enum": _nullable(Draft4Validator.VALIDATORS["enum"])},
)
_RequestValidator = validators.extend(_ResponseValidator, {"readOnly": _read_only_in_request})


class JiraContract:
    """Checks traffic against the spec. Build with `jira_contract()` (cached) in tests."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self._registry: Registry = Registry().with_resource(_BASE_URI, DRAFT4.create_resource(spec))
        # Literal paths before templated ones (`/issue/picker` before `/issue/{issueIdOrKey}`).
        routes = []
        for template in spec.get("paths", {}):
            pattern = re.sub(r"\\\{([^}/]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            routes.append((template.count("{"), -len(template), template, re.compile(f"^{pattern}$")))
        self._routes = [(template, regex) for *_, template, regex in sorted(routes)]
        self._validators: dict[tuple[str, str], Any] = {}

    # -- lookup --------------------------------------------------------------------------

    def operation(self, method: str, path: str) -> Operation | None:
        """The operation for `method path`, or None when the spec has no such path or method."""
        for template, regex in self._routes:
            match = regex.match(path)
            if not match:
                continue
            item = self.spec["paths"][template]
            op = item.get(method.lower())
            if op is None:
                return None
            merged = {**op, "parameters": _merge_parameters(item.get("parameters", []), op.get("parameters", []))}
            return Operation(method.upper(), template, op.get("operationId", ""), merged, match.groupdict())
        return None

    def schema_errors(self, schema: Mapping[str, Any], instance: Any, *, request: bool) -> list[str]:
        """Messages for each way `instance` breaks `schema` (a `$ref` into the spec, or inline)."""
        validator = self._validator(schema, request=request)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        return [f"{json_path(e.absolute_path)}: {e.message}" for e in errors]

    def _validator(self, schema: Mapping[str, Any], *, request: bool) -> Any:
        cache_key = (json.dumps(schema, sort_keys=True), "request" if request else "response")
        validator = self._validators.get(cache_key)
        if validator is None:
            # Refs inside the operation are relative to the spec document.
            rooted = _rebase_refs(schema)
            cls = _RequestValidator if request else _ResponseValidator
            validator = cls(rooted, registry=self._registry)
            self._validators[cache_key] = validator
        return validator

    # -- requests ------------------------------------------------------------------------

    def check_request(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        body: Any = None,
        has_body: bool | None = None,
        content_type: str | None = None,
    ) -> list[Violation]:
        """Path template and method exist; query parameters are known and of their types;
        the JSON body matches the operation's requestBody schema (and ADF for comment bodies)."""
        has_body = body is not None if has_body is None else has_body
        found: list[Violation] = []

        def violation(where: str, message: str) -> None:
            found.append(Violation(method.upper(), path, where, message))

        op = self.operation(method, path)
        if op is None:
            known = any(regex.match(path) for _, regex in self._routes)
            violation("request.path", f"no {method.upper()} operation" if known else "no such path in the spec")
            return found
        self._check_query(op, list(query), violation)
        for param in op.parameters:
            if param.get("in") == "path" and param["name"] in op.path_params:
                for message in self.schema_errors(param.get("schema", {}), op.path_params[param["name"]], request=True):
                    violation("request.path", f"{param['name']}{message.removeprefix('$')}")
        request_body = op.spec.get("requestBody")
        if request_body is None:
            if has_body:
                violation("request.body", f"{op.operation_id} takes no body")
            return found
        if not has_body:
            if request_body.get("required"):
                violation("request.body", f"{op.operation_id} requires a body")
            return found
        media = request_body.get("content", {})
        if content_type is not None and content_type.split(";")[0].strip().lower() not in media:
            violation("request.body", f"content type {content_type!r} not accepted (expects {', '.join(media)})")
            return found
        schema = (media.get("application/json") or {}).get("schema")
        if schema is not None:
            for message in self.schema_errors(schema, body, request=True):
                violation("request.body", message)
        if op.operation_id in ("addComment", "updateComment") and isinstance(body, Mapping) and "body" in body:
            for message in adf_problems(body["body"], at="$.body"):
                violation("request.body", message)
        return found

    def _check_query(self, op: Operation, query: list[tuple[str, str]], violation: Any) -> None:
        declared = {p["name"]: p for p in op.parameters if p.get("in") == "query"}
        given: dict[str, list[str]] = {}
        for name, value in query:
            given.setdefault(name, []).append(value)
        for name, values in given.items():
            param = declared.get(name)
            if param is None:
                violation("request.query", f"unknown query parameter {name!r}")
                continue
            schema = param.get("schema", {})
            is_array = schema.get("type") == "array"
            if len(values) > 1 and not is_array:
                violation("request.query", f"{name!r} given {len(values)} times but is not an array")
            item_schema = schema.get("items", {}) if is_array else schema
            for value in values:
                coerced = _coerce(value, item_schema)
                for message in self.schema_errors(item_schema, coerced, request=True):
                    violation("request.query", f"{name}={value!r}: {message.partition(': ')[2]}")
        for name, param in declared.items():
            if param.get("required") and name not in given:
                violation("request.query", f"required query parameter {name!r} missing")

    # -- responses -----------------------------------------------------------------------

    def check_response(self, method: str, path: str, status: int, body: Any) -> list[Violation]:
        """The status is documented for the operation, and a JSON body matches its schema."""
        op = self.operation(method, path)
        if op is None:
            return [Violation(method.upper(), path, "response.status", "no such operation in the spec")]
        responses = op.spec.get("responses", {})
        response = responses.get(str(status)) or responses.get("default")
        if response is None:
            return [
                Violation(
                    method.upper(), path, "response.status", f"{status} is not a documented answer of {op.operation_id}"
                )
            ]
        schema = ((response.get("content") or {}).get("application/json") or {}).get("schema")
        if schema is None:
            return []
        return [
            Violation(method.upper(), path, "response.body", message)
            for message in self.schema_errors(schema, body, request=False)
        ]


@cache
def jira_contract() -> JiraContract:
    """The contract of Jira Cloud's REST API v3, loaded on first use (SpecsMissing if absent)."""
    with spec_file(SPEC).open(encoding="utf-8") as handle:
        return JiraContract(json.load(handle))


# -- Atlassian Document Format -------------------------------------------------------------

_INLINE = {"text", "hardBreak", "mention", "emoji", "inlineCard", "date", "status"}
_MARKS = {"link", "strong", "em", "code", "strike", "underline", "subsup", "textColor", "backgroundColor"}


def adf_problems(doc: Any, *, at: str = "$") -> list[str]:
    """Structural problems of an ADF document: a `doc` of version 1 whose nodes have a type,
    whose text nodes have non-empty text, and whose link marks have an href.
    https://developer.atlassian.com/cloud/jira/platform/apis/document/structure/"""
    if not isinstance(doc, Mapping):
        return [f"{at}: REST v3 takes Atlassian Document Format, not {type(doc).__name__}"]
    problems: list[str] = []
    if doc.get("type") != "doc":
        problems.append(f"{at}.type: must be 'doc'")
    if doc.get("version") != 1:
        problems.append(f"{at}.version: must be 1")
    if not isinstance(doc.get("content"), list):
        problems.append(f"{at}.content: must be a list of block nodes")
        return problems
    for index, node in enumerate(doc["content"]):
        _adf_node(node, f"{at}.content[{index}]", problems)
    return problems


#: What the containers threadlink writes may hold (ADF's JSON schema, `full.json`): a
#: heading or a quote in a list item, a mark beside code, ... are refused by Jira.
_CHILDREN = {
    "paragraph": _INLINE,
    "heading": _INLINE,
    "bulletList": {"listItem"},
    "orderedList": {"listItem"},
    "listItem": {"paragraph", "bulletList", "orderedList", "codeBlock", "mediaSingle", "taskList"},
    "blockquote": {"paragraph", "bulletList", "orderedList", "codeBlock", "mediaGroup", "mediaSingle", "extension"},
    "codeBlock": {"text"},
}
_FIRST_IN_LIST_ITEM = {"paragraph", "codeBlock", "mediaSingle"}


def _adf_node(node: Any, at: str, problems: list[str], parent: str = "doc") -> None:
    if not isinstance(node, Mapping) or not isinstance(node.get("type"), str):
        problems.append(f"{at}: a node must be an object with a type")
        return
    kind = node["type"]
    allowed = _CHILDREN.get(parent)
    if allowed is not None and kind not in allowed:
        problems.append(f"{at}: a {kind} cannot stand in a {parent}")
    if kind in ("heading", "rule") and parent != "doc":
        problems.append(f"{at}: a {kind} stands only at the top level")
    if kind == "text":
        kinds = [m.get("type") for m in node.get("marks", []) if isinstance(m, Mapping)]
        if "code" in kinds and set(kinds) - {"code", "link"}:
            problems.append(f"{at}.marks: the code mark goes with no mark but a link")
        if parent == "codeBlock" and kinds:
            problems.append(f"{at}.marks: text in a codeBlock has no marks")
        if not isinstance(node.get("text"), str) or not node["text"]:
            problems.append(f"{at}.text: a text node needs non-empty text")
        for index, mark in enumerate(node.get("marks", [])):
            mark_at = f"{at}.marks[{index}]"
            if not isinstance(mark, Mapping) or mark.get("type") not in _MARKS:
                problems.append(f"{mark_at}: unknown mark")
            elif mark["type"] == "link" and not (mark.get("attrs") or {}).get("href"):
                problems.append(f"{mark_at}.attrs.href: a link mark needs an href")
        return
    if "content" in node:
        if not isinstance(node["content"], list):
            problems.append(f"{at}.content: must be a list")
            return
        for index, child in enumerate(node["content"]):
            _adf_node(child, f"{at}.content[{index}]", problems, kind)
        if not node["content"] and kind in ("blockquote", "bulletList", "orderedList", "listItem"):
            problems.append(f"{at}: {kind} needs content")
        first = node["content"][0] if node["content"] else None
        if kind == "listItem" and isinstance(first, Mapping) and first.get("type") not in _FIRST_IN_LIST_ITEM:
            problems.append(f"{at}.content[0]: a listItem starts with a paragraph or a codeBlock")
    elif kind in ("blockquote", "bulletList", "orderedList", "listItem"):
        problems.append(f"{at}: {kind} needs content")


# -- helpers -------------------------------------------------------------------------------


def _merge_parameters(path_level: list[Any], op_level: list[Any]) -> list[Any]:
    merged = {(p.get("name"), p.get("in")): p for p in path_level}
    merged.update({(p.get("name"), p.get("in")): p for p in op_level})
    return list(merged.values())


def _rebase_refs(schema: Any) -> Any:
    if isinstance(schema, Mapping):
        return {
            key: (
                f"{_BASE_URI}{value}"
                if key == "$ref" and isinstance(value, str) and value.startswith("#")
                else _rebase_refs(value)
            )
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_rebase_refs(item) for item in schema]
    return schema


def _coerce(value: str, schema: Mapping[str, Any]) -> Any:
    """A query string value as the JSON type its schema declares (left a string if it is not one)."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return value
