"""Is a new JSON Schema of a topic's values still compatible with the old one?

`breaking_changes(old, new)` lists what would break a producer or a consumer written against
`old`: a property removed, a property newly required, a type changed or narrowed, an enum or
const value removed, a variant of a union removed, `additionalProperties` turned false.
Additive changes (a new optional property, a new enum value, a new `$defs` entry) pass.

It covers the shapes pydantic generates (objects, arrays, `anyOf`/`oneOf` with or without a
discriminator, enums, consts, local `$ref`s), not JSON Schema in general. Each message starts
with the path of the instance it is about, e.g. `$.data.thread.channel`; `[*]` is any array item
and `[kind=ticket]` the variant of a union whose discriminator `kind` is `ticket`.
"""

from __future__ import annotations

import json
from typing import Any

Schema = dict[str, Any]

_UNION_KEYS = ("anyOf", "oneOf")
_VIA_REF = "x-threadlink-via-ref"  # marks a resolved copy, so a model inside a union is also compared once


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """Every breaking difference from `old` to `new`, in schema order; empty when compatible."""
    return _Diff(old, new).run()


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class _Diff:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.problems: list[str] = []
        # ($ref pairs already compared: recursive models must not loop forever, and a model used
        # in several places is reported once, at the first path it is found.)
        self.seen: set[tuple[str, str]] = set()

    def run(self) -> list[str]:
        self.compare(self.old_root, self.new_root, "$")
        return self.problems

    def report(self, path: str, problem: str) -> None:
        self.problems.append(f"{path}: {problem}")

    # -- resolving ---------------------------------------------------------------------------

    @staticmethod
    def resolve(root: Schema, node: Schema) -> Schema:
        """Follow local `$ref`s; keywords next to a `$ref` (description, required) apply too."""
        while "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"only local $refs are supported, got {ref!r}")
            target: Any = root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            node = {**target, **siblings, _VIA_REF: ref}
            if siblings.get("required") and target.get("required"):
                node["required"] = [*target["required"], *siblings["required"]]
        return node

    def variants(self, root: Schema, node: Schema) -> dict[str, Schema]:
        """The alternatives a node allows, keyed so that old and new ones can be paired.

        A union's object variants are keyed by their discriminator value (renaming a model does
        not change the wire), other variants by JSON type; `type: [a, b]` is a union too.
        """
        node = self.resolve(root, node)
        branches = next((node[key] for key in _UNION_KEYS if key in node), None)
        if branches is None:
            types = node.get("type")
            if isinstance(types, list):
                return {t: {**node, "type": t} for t in types}
            return {_type_key(node): node}
        discriminator = (node.get("discriminator") or {}).get("propertyName")
        found: dict[str, Schema] = {}
        for index, branch in enumerate(branches):
            for key, variant in self.variants(root, branch).items():
                if discriminator:
                    tag = ((variant.get("properties") or {}).get(discriminator) or {}).get("const")
                    if tag is not None:
                        key = f"{discriminator}={tag}"
                if key in found:  # e.g. two models in a union without a discriminator
                    key = f"{key}:{variant.get('title', index)}"
                found[key] = variant
        return found

    # -- comparing ---------------------------------------------------------------------------

    def compare(self, old: Schema, new: Schema, path: str) -> None:
        if "$ref" in old and "$ref" in new:
            if (old["$ref"], new["$ref"]) in self.seen:
                return
            self.seen.add((old["$ref"], new["$ref"]))

        old_variants = self.variants(self.old_root, old)
        new_variants = self.variants(self.new_root, new)
        if len(old_variants) == 1 and len(new_variants) == 1:
            self.compare_plain(next(iter(old_variants.values())), next(iter(new_variants.values())), path)
            return
        for key, old_variant in old_variants.items():
            match = new_variants.get(key) or _widened(key, new_variants)
            if match is None:
                now = " | ".join(new_variants)
                what = f"variant {key} removed" if "=" in key else f"type narrowed: {key} no longer allowed"
                self.report(path, f"{what} (now {now})")
                continue
            refs = (old_variant.get(_VIA_REF), match.get(_VIA_REF))
            if None not in refs:
                if refs in self.seen:
                    continue
                self.seen.add(refs)  # type: ignore[arg-type]
            self.compare_plain(old_variant, match, f"{path}[{key}]" if "=" in key else path)

    def compare_plain(self, old: Schema, new: Schema, path: str) -> None:
        old_type, new_type = _type_key(old), _type_key(new)
        if old_type != new_type and not _widens(old_type, new_type):
            self.report(path, f"type {'narrowed' if old_type == 'any' else 'changed'} from {old_type} to {new_type}")
            return

        old_values, new_values = _allowed_values(old), _allowed_values(new)
        if new_values is not None:
            if old_values is None:
                self.report(path, f"values narrowed to {', '.join(map(_show, new_values))}")
            elif removed := [value for value in old_values if value not in new_values]:
                self.report(path, f"enum/const value(s) removed: {', '.join(map(_show, removed))}")

        if new_type == "object":
            self.compare_objects(old, new, path)
        elif new_type == "array" and isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
            self.compare(old["items"], new["items"], f"{path}[*]")

    def compare_objects(self, old: Schema, new: Schema, path: str) -> None:
        old_props: dict[str, Schema] = old.get("properties") or {}
        new_props: dict[str, Schema] = new.get("properties") or {}
        for name, old_prop in old_props.items():
            if name not in new_props:
                self.report(f"{path}.{name}", "property removed")
            else:
                self.compare(old_prop, new_props[name], f"{path}.{name}")

        old_required = set(old.get("required") or ())
        for name in new.get("required") or ():
            if name not in old_required:
                self.report(f"{path}.{name}", "property newly required")

        old_extra, new_extra = old.get("additionalProperties", True), new.get("additionalProperties", True)
        if new_extra is False and old_extra is not False:
            self.report(path, "additionalProperties turned false")
        elif isinstance(old_extra, dict) and isinstance(new_extra, dict):
            self.compare(old_extra, new_extra, f"{path}.*")


def _type_key(node: Schema) -> str:
    """The JSON type of a non-union node; `any` when it does not say."""
    declared = node.get("type")
    if isinstance(declared, str):
        return declared
    if "properties" in node:
        return "object"
    if "const" in node:
        return _json_type(node["const"])
    if node.get("enum"):
        types = {_json_type(value) for value in node["enum"]}
        return types.pop() if len(types) == 1 else "any"
    return "any"


def _json_type(value: Any) -> str:
    for python_type, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string")):
        if isinstance(value, python_type):
            return name
    return {type(None): "null", list: "array", dict: "object"}.get(type(value), "any")


def _widens(old_type: str, new_type: str) -> bool:
    return new_type == "any" or (old_type, new_type) == ("integer", "number")


def _widened(key: str, new_variants: dict[str, Schema]) -> Schema | None:
    """The new variant that still accepts what the old variant `key` accepted, if any."""
    for new_key, variant in new_variants.items():
        if _widens(key, new_key):
            return variant
    return None


def _allowed_values(node: Schema) -> list[Any] | None:
    if "const" in node:
        return [node["const"]]
    if "enum" in node:
        return list(node["enum"])
    return None
