"""JSON parsing that refuses what RFC 8259 leaves ambiguous: duplicate keys, NaN, Infinity;
and request bodies parsed that way, refused with 400 ``invalid_json``."""

from __future__ import annotations

import json
from typing import Any

from tokenbroker.errors import InvalidRequest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in object")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def loads(raw: bytes | str) -> Any:
    """Parse JSON (UTF-8 when bytes) strictly; ValueError (UnicodeDecodeError included) or
    RecursionError for absurd nesting otherwise. One decoder serves every call."""
    return _DECODER.decode(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def parse_json(raw: bytes) -> Any:
    """A request body as strict JSON; 400 ``invalid_json`` otherwise."""
    try:
        return loads(raw)
    except (ValueError, RecursionError):
        raise InvalidRequest("invalid_json", "The request body is not valid JSON.") from None


def parse_body(raw: bytes) -> Any:
    """The request body as JSON; an empty body means ``{}``."""
    return parse_json(raw) if raw.strip() else {}
