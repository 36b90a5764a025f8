"""Requests checked against the schema data derived from the official documents.

``tokenbroker/schemas/`` holds what ``scripts/derive_schemas.py`` kept of an OpenAPI
document: types, enums, ranges, closed objects, no prose. fastjsonschema compiles a
component once, at import; the check costs tens of µs per request where jsonschema took
~480 µs on the same GA body (docs/performance.md). A failure becomes the error envelope:
``unknown_parameter``, ``invalid_type`` or ``invalid_value``, with the field's path as
``param`` and, in the message, what the field must be, in the schema's own terms (its
range, kinds or values; never the value sent).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import fastjsonschema

from tokenbroker.errors import InvalidRequest

Check = Callable[[Any], Any]
_UNKNOWN = re.compile(r"must not contain \{'?\"?([^,'\"}]+)")


def schema_data(file: str) -> dict[str, Any]:
    """The ``$defs`` of one derived schema file."""
    text = resources.files("tokenbroker").joinpath("schemas", file).read_text()
    defs: dict[str, Any] = json.loads(text)["$defs"]
    return defs


def compile_schema(root: Mapping[str, Any], defs: Mapping[str, Any]) -> Check:
    """A compiled check of ``root``, whose references point into ``defs``."""
    text = json.dumps({**root, "definitions": defs}).replace('"#/$defs/', '"#/definitions/')
    check: Check = fastjsonschema.compile(json.loads(text))
    return check


def _param(path: list[str], extra: str | None = None) -> str | None:
    text = ""
    for part in [*path[1:], *([extra] if extra else [])]:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or None


SAFE_INTEGER = 2**53  # beyond it JSON numbers lose precision in most parsers


def _fail_value(path: list[str], why: str) -> InvalidRequest:
    param = _param(["data", *path])
    return InvalidRequest("invalid_value", f"'{param}' {why}.", param=param)


def sane(body: Any) -> None:
    """Refuse what a schema cannot: integers past ±2**53 (a 4 000-digit number would be
    forwarded as is), floats that overflowed to infinity (``1e400``), and strings that are
    not valid Unicode (a lone surrogate such as ``"\\ud800"``)."""
    stack: list[tuple[Any, list[str]]] = [(body, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if not key.isascii() and not _unicode(key):
                    raise _fail_value(path, "has a key that is not valid Unicode")
                stack.append((item, [*path, key]))
        elif isinstance(value, list):
            stack.extend((item, [*path, str(i)]) for i, item in enumerate(value))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and not -SAFE_INTEGER <= value <= SAFE_INTEGER:
            raise _fail_value(path, "is outside the numbers JSON carries exactly (±2^53)")
        elif isinstance(value, float) and not math.isfinite(value):
            raise _fail_value(path, "must be a finite number")
        elif isinstance(value, str) and not value.isascii() and not _unicode(value):
            raise _fail_value(path, "is not valid Unicode")


def _unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check(validator: Check, body: Any, *, prefix: str = "") -> Any:
    """``body`` if ``validator`` accepts it, else :class:`InvalidRequest` naming the field
    (``prefix`` goes before a param, for a value checked on its own)."""
    sane(body)
    try:
        validator(body)
    except fastjsonschema.JsonSchemaValueException as exc:
        path = [str(p) for p in exc.path]
        if prefix:
            path = [path[0], *prefix.split("."), *path[1:]]
        if exc.rule == "additionalProperties":
            unknown = _UNKNOWN.search(exc.message)
            param = _param(path, unknown.group(1).strip() if unknown else None)
            raise InvalidRequest("unknown_parameter", f"Unknown parameter: '{param}'.",
                                 param=param) from None  # fmt: skip
        if exc.rule == "required":
            missing = [name for name in exc.rule_definition if name not in (exc.value or {})]
            param = _param(path, missing[0] if missing else None)
            raise InvalidRequest("missing_required_parameter", f"Missing required parameter: "
                                 f"'{param}'.", param=param) from None  # fmt: skip
        param = _param(path)
        code = "invalid_type" if exc.rule == "type" else "invalid_value"
        where = f"'{param}'" if param else "The request body"
        why = _why(exc.rule, exc.rule_definition)
        message = f"Invalid value for {where}" + (f": {why}." if why else ".")
        raise InvalidRequest(code, message, param=param) from None
    return body


_KINDS = {"string": "a string", "number": "a number", "integer": "an integer",
          "boolean": "true or false", "object": "an object", "array": "an array",
          "null": "null"}  # fmt: skip
_BOUNDS = {
    "minimum": "at least {}",
    "maximum": "at most {}",
    "exclusiveMinimum": "greater than {}",
    "exclusiveMaximum": "less than {}",
    "minLength": "at least {} characters long",
    "maxLength": "at most {} characters long",
    "minItems": "a list of at least {} items",
    "maxItems": "a list of at most {} items",
}
_SHOWN = 12  # allowed values listed in a message, at most


def _choices(values: list[Any]) -> str:
    """``"inf"``, or ``one of "a", "b", …`` (the first few)."""
    if len(values) == 1:
        return json.dumps(values[0])
    shown = ", ".join(json.dumps(v) for v in values[:_SHOWN])
    return "one of " + shown + (", …" if len(values) > _SHOWN else "")


def _alternative(schema: Any) -> str | None:
    """One branch of an anyOf in words (``an integer from 1 to 4096``, ``"inf"``), or
    None when it is more than a kind, a range or a few values."""
    if not isinstance(schema, dict):
        return None
    values = schema.get("enum")
    if isinstance(values, list):
        return _choices(values)
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = schema.get("type")
    if not isinstance(kind, str) or set(schema) - {"type", "minimum", "maximum"}:
        return None
    low, high = schema.get("minimum"), schema.get("maximum")
    span = (f" from {low} to {high}" if low is not None and high is not None
            else f" of at least {low}" if low is not None
            else f" of at most {high}" if high is not None else "")  # fmt: skip
    return _KINDS.get(kind, kind) + span


def _why(rule: str | None, limit: Any) -> str | None:
    """What the schema's failed ``rule`` wants, from its own ``limit`` (never the value
    sent); None where a sentence would not explain it (patterns, nested schemas)."""
    if rule == "type":
        kinds = limit if isinstance(limit, list) else [limit]
        return "must be " + " or ".join(_KINDS.get(str(k), str(k)) for k in kinds)
    if rule == "enum" and isinstance(limit, list):
        return "must be " + _choices(limit)
    if rule == "const":
        return f"must be {json.dumps(limit)}"
    if rule in _BOUNDS:
        return "must be " + _BOUNDS[rule].format(limit)
    if rule in ("anyOf", "oneOf") and isinstance(limit, list):
        branches = [_alternative(branch) for branch in limit]
        if all(branches):
            return "must be " + " or ".join(b for b in branches if b)
    return None
