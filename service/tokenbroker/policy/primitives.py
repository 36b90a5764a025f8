"""The building blocks of policy parsing: typed reads that append ``path: reason`` to a
shared error list and go on, so one pass names every problem."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tokenbroker.policy.model import NumberRange, TokenCap

Errors = list[str]
Parser = Callable[[Any, str, Errors], Any]


def mapping(raw: Any, path: str, errors: Errors, keys: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        errors.append(f"{path or '(document)'}: must be a mapping")
        return {}
    for key in raw:
        if key not in keys:
            errors.append(f"{path}.{key}: unknown key" if path else f"{key}: unknown key")
    return raw


def string_list(allowed: tuple[str, ...] | None, *, what: str = "value") -> Parser:
    def parse(raw: Any, path: str, errors: Errors) -> tuple[str, ...] | None:
        if not isinstance(raw, list) or not raw:
            errors.append(f"{path}: must be a non-empty list")
            return ()
        out = []
        for i, item in enumerate(raw):
            if not isinstance(item, str):
                errors.append(f"{path}[{i}]: must be a string")
            elif allowed is not None and item not in allowed:
                errors.append(
                    f"{path}[{i}]: unknown {what} {item!r} (one of: {', '.join(allowed)})"
                )
            else:
                out.append(item)
        if len(set(out)) != len(out):
            errors.append(f"{path}: has duplicates")
        return tuple(out)

    return parse


def _number(raw: Any, path: str, errors: Errors, low: float, high: float) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        errors.append(f"{path}: must be a number")
        return None
    if raw < low:
        errors.append(f"{path}: must be at least {low}")
        return None
    if raw > high:
        errors.append(f"{path}: must be at most {high}")
        return None
    return float(raw)


def number_range(low: float, high: float, *, with_default: bool, integral: bool = False) -> Parser:
    def parse(raw: Any, path: str, errors: Errors) -> NumberRange | None:
        keys = ("min", "max", "default") if with_default else ("min", "max")
        raw = mapping(raw, path, errors, dict.fromkeys(keys))
        before = len(errors)
        values: dict[str, float | None] = {}
        for key in keys:
            value = raw.get(key)
            if value is not None:
                if integral and (isinstance(value, bool) or not isinstance(value, int)):
                    errors.append(f"{path}.{key}: must be an integer")
                    continue
                value = _number(value, f"{path}.{key}", errors, low, high)
            values[key] = value
        if len(errors) > before:
            return None
        lo = values.get("min")
        lo = low if lo is None else lo
        hi = values.get("max")
        hi = high if hi is None else hi
        if lo > hi:
            errors.append(f"{path}: min ({lo:g}) is greater than max ({hi:g})")
            return None
        default = values.get("default")
        if default is not None and not lo <= default <= hi:
            errors.append(f"{path}.default: {default:g} is outside min..max ({lo:g}..{hi:g})")
            return None
        return NumberRange(lo, hi, default)

    return parse


def cap(low: int, high: int) -> Parser:
    """``{max, default}``: a whole number, clamped to max; default max."""
    return lambda raw, path, errors: cap_of(raw, path, errors, low, high)


def cap_of(raw: Any, path: str, errors: Errors, low: int, high: int) -> TokenCap | None:
    raw = mapping(raw, path, errors, {"max": None, "default": None})
    before = len(errors)
    values = {}
    for key in ("max", "default"):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}.{key}: must be an integer")
        elif value < low:
            errors.append(f"{path}.{key}: must be at least {low}")
        elif value > high:
            errors.append(f"{path}.{key}: must be at most {high}")
        else:
            values[key] = value
    if len(errors) > before:
        return None
    cap = values.get("max", high)
    default = values.get("default", cap)
    if default > cap:
        errors.append(f"{path}.default: {default} is greater than max ({cap})")
        return None
    return TokenCap(cap, default)
