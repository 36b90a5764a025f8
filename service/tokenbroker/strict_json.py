"""JSON parsing that refuses what RFC 8259 leaves ambiguous: duplicate keys, NaN, Infinity."""

from __future__ import annotations

import json
from typing import Any


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in object")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: bytes | str) -> Any:
    """Parse JSON strictly; ValueError (or RecursionError for absurd nesting) otherwise."""
    return json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
