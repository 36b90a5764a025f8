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


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def loads(raw: bytes | str) -> Any:
    """Parse JSON (UTF-8 when bytes) strictly; ValueError (UnicodeDecodeError included) or
    RecursionError for absurd nesting otherwise. One decoder serves every call."""
    return _DECODER.decode(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
