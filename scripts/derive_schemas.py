#!/usr/bin/env python3
"""Derive JSON Schema data from an official OpenAPI document, without its prose.

    scripts/derive_schemas.py DOC.openapi.yaml ROOT [ROOT ...] --out FILE.json

Keeps, for the named component schemas and all they reference, only the validation facts
(types, enums, properties, required, ranges, ...) as a JSON Schema (2020-12) document with
``$defs``; descriptions, examples and vendor extensions are dropped. Three facts that the
documents state in words are read from them as they are derived:

- "limited to [0.6, 1.2]", "(0.0 to 1.0)" and "between 1 and 4096" become ``minimum`` /
  ``maximum`` (on the integer branch of a ``oneOf``, where there is one);
- "can be set to `null`", ``default: null`` and OpenAPI's ``nullable`` make it nullable;
- the API refuses unknown parameters (``unknown_parameter``), so every object that lists
  its properties is closed (``additionalProperties: false``).

An OpenAPI extract may omit ``type`` where ``items`` or ``properties`` imply it; it is
added. The next API version is a re-run of this script, not an edit of the data.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import yaml

KEYWORDS = {
    "type", "enum", "const", "properties", "items", "required", "anyOf", "oneOf", "allOf",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "minItems", "maxItems", "uniqueItems", "pattern", "additionalProperties", "$ref",
}  # fmt: skip
LIMITED = re.compile(r"limited to \[(-?[\d.]+),\s*(-?[\d.]+)\]|\((-?[\d.]+) to (-?[\d.]+)\)")
BETWEEN = re.compile(r"between (-?\d+) and (-?\d+)")
NULLABLE = re.compile(r"set to `null`", re.IGNORECASE)


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def _ranged(schema: dict[str, Any], low: str, high: str) -> None:
    branches = [b for b in schema.get("oneOf", []) if b.get("type") == "integer"]
    for target in branches or [schema]:
        target["minimum"], target["maximum"] = _number(low), _number(high)


def derive(node: Any) -> Any:
    if isinstance(node, list):
        return [derive(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: derive(sub) for name, sub in value.items()}
        elif key == "$ref":
            out[key] = value.replace("#/components/schemas/", "#/$defs/")
        elif key in KEYWORDS:
            out[key] = derive(value)
    if "items" in out and "type" not in out:
        out["type"] = "array"
    if "properties" in out:
        out.setdefault("type", "object")
        out.setdefault("additionalProperties", False)
    prose = str(node.get("description", ""))
    if (match := LIMITED.search(prose)) or (match := BETWEEN.search(prose)):
        _ranged(out, *[g for g in match.groups() if g is not None])
    nullable = node.get("nullable") is True or ("default" in node and node["default"] is None)
    if nullable or NULLABLE.search(prose):
        out = _nullable(out)
    return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null: as a second type where it has one (errors keep naming the field
    inside it), else as an ``anyOf``."""
    if isinstance(schema.get("type"), str) and not any(k in schema for k in ("anyOf", "oneOf")):
        out = {**schema, "type": [schema["type"], "null"]}
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [schema, {"type": "null"}]}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if "$ref" in node else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def document(openapi: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    schemas = openapi["components"]["schemas"]
    wanted, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo += sorted(_refs(schemas[name]))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"Derived from {openapi['info']['title']} {openapi['info']['version']} "
        "by scripts/derive_schemas.py; do not edit.",
        "$defs": {name: derive(schemas[name]) for name in sorted(wanted)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("openapi", type=Path)
    parser.add_argument("roots", nargs="+", help="component schema names to keep")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data = document(yaml.safe_load(args.openapi.read_text()), args.roots)
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
