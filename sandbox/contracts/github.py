"""GitHub's published REST contract (OpenAPI 3.0, `github/api.github.com.issues.json`: the issues
subset, see that folder's README) as a checker of requests, answers and webhook payloads.

The checking is the same OpenAPI 3.0 machinery as Jira's (`sandbox.contracts.jira.JiraContract`:
draft-4 JSON Schema plus `nullable` and `readOnly`); GitHub's description adds two things it does
not have: operation parameters are `$ref`s into `#/components/parameters` (resolved here, once,
so path and query parameters are checked by name), and webhook payloads are described under
`x-webhooks` (`issues-opened`, `issue-comment-created`, ...), checked by `check_webhook`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from sandbox.contracts import spec_file
from sandbox.contracts.jira import ContractViolation, JiraContract, Operation, Violation, _coerce

SPEC = "github/api.github.com.issues.json"
_PARAMETER_REF = "#/components/parameters/"
_RESPONSE_REF = "#/components/responses/"

__all__ = ["ContractViolation", "GitHubContract", "Violation", "github_contract", "webhook_key"]


def webhook_key(event: str, action: str) -> str:
    """The `x-webhooks` entry of an `X-GitHub-Event` and payload `action`: `issue_comment`
    `created` -> `issue-comment-created`."""
    return f"{event.replace('_', '-')}-{action}"


class GitHubContract(JiraContract):
    """Checks traffic against GitHub's description. Build with `github_contract()` (cached)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        resolved = copy.deepcopy(dict(spec))
        parameters = resolved.get("components", {}).get("parameters", {})

        def resolve(items: list[Any]) -> list[Any]:
            out = []
            for item in items:
                ref = item.get("$ref") if isinstance(item, Mapping) else None
                if isinstance(ref, str) and ref.startswith(_PARAMETER_REF):
                    item = parameters[ref.removeprefix(_PARAMETER_REF)]
                out.append(item)
            return out

        answers = resolved.get("components", {}).get("responses", {})
        for path_item in resolved.get("paths", {}).values():
            if "parameters" in path_item:
                path_item["parameters"] = resolve(path_item["parameters"])
            for op in path_item.values():
                if isinstance(op, dict) and "parameters" in op:
                    op["parameters"] = resolve(op["parameters"])
                for status, answer in (op.get("responses") or {}).items() if isinstance(op, dict) else ():
                    ref = answer.get("$ref") if isinstance(answer, Mapping) else None
                    if isinstance(ref, str) and ref.startswith(_RESPONSE_REF):
                        op["responses"][status] = answers[ref.removeprefix(_RESPONSE_REF)]
        super().__init__(resolved)

    def operation(self, method: str, path: str) -> Operation | None:
        """As Jira's, with path parameters read as the types GitHub declares (`issue_number`
        is an integer in the URL)."""
        op = super().operation(method, path)
        if op is None:
            return None
        schemas = {p.get("name"): p.get("schema", {}) for p in op.parameters if p.get("in") == "path"}
        typed = {name: _coerce(value, schemas.get(name, {})) for name, value in op.path_params.items()}
        return dataclasses.replace(op, path_params=typed)

    def webhook_schema(self, event: str, action: str) -> Mapping[str, Any] | None:
        entry = self.spec.get("x-webhooks", {}).get(webhook_key(event, action))
        if not isinstance(entry, Mapping):
            return None
        post = entry.get("post") or {}
        return ((post.get("requestBody") or {}).get("content") or {}).get("application/json", {}).get("schema")

    def check_webhook(self, event: str, payload: Any) -> list[Violation]:
        """The payload of one `X-GitHub-Event` delivery matches its `x-webhooks` schema."""
        action = payload.get("action") if isinstance(payload, Mapping) else None
        where = f"webhook {event}"
        if not isinstance(action, str):
            return [Violation("POST", where, "webhook.body", "no action")]
        schema = self.webhook_schema(event, action)
        if schema is None:
            return [Violation("POST", where, "webhook.body", f"no x-webhooks entry {webhook_key(event, action)!r}")]
        return [
            Violation("POST", f"{where}.{action}", "webhook.body", message)
            for message in self.schema_errors(schema, payload, request=False)
        ]

    def example(self, name: str) -> dict[str, Any]:
        """A copy of one of GitHub's own examples (`#/components/examples/<name>`), e.g. `issue`."""
        return copy.deepcopy(self.spec["components"]["examples"][name]["value"])


@cache
def github_contract() -> GitHubContract:
    """The contract of GitHub's issues REST API and webhooks, loaded on first use (SpecsMissing if absent)."""
    with spec_file(SPEC).open(encoding="utf-8") as handle:
        return GitHubContract(json.load(handle))
