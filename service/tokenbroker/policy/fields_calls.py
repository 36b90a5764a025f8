"""Parsers of the policy fields for live calls: ``mode``, ``calls`` and ``budgets``."""

from __future__ import annotations

import math
from typing import Any

from tokenbroker.config.durations import parse_duration
from tokenbroker.limits.rules import Budget
from tokenbroker.policy.model import CallRules
from tokenbroker.policy.primitives import Errors, Parser, mapping

MODES = ("any", "calls_only")
ON_VIOLATION = ("revert", "hangup")
UPSTREAM_MAX_CALL = 3600.0  # a Realtime session lasts at most 60 minutes upstream


def _mode(raw: Any, path: str, errors: Errors) -> str | None:
    if raw not in MODES:
        errors.append(f"{path}: must be one of {', '.join(MODES)}")
        return None
    return str(raw)


def _duration(raw: Any, path: str, errors: Errors, high: float | None = None) -> float | None:
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        errors.append(f"{path}: {exc}")
        return None
    if high is not None and seconds > high:
        errors.append(f"{path}: must be at most {high / 60:g}m (the upstream's maximum)")
        return None
    return seconds


def _whole(raw: Any, path: str, errors: Errors) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        errors.append(f"{path}: must be a whole number of at least 1")
        return None
    return raw


def _calls(raw: Any, path: str, errors: Errors) -> CallRules | None:
    keys = ("max_duration", "idle_timeout", "on_violation", "max_live_calls")
    raw = mapping(raw, path, errors, dict.fromkeys(keys))
    before = len(errors)
    rules: dict[str, Any] = {}
    if "max_duration" in raw:
        rules["max_duration"] = _duration(
            raw["max_duration"], f"{path}.max_duration", errors, UPSTREAM_MAX_CALL
        )
    if "idle_timeout" in raw:
        rules["idle_timeout"] = _duration(raw["idle_timeout"], f"{path}.idle_timeout", errors)
    if "on_violation" in raw:
        if raw["on_violation"] not in ON_VIOLATION:
            errors.append(f"{path}.on_violation: must be one of {', '.join(ON_VIOLATION)}")
        rules["on_violation"] = raw["on_violation"]
    if "max_live_calls" in raw:
        rules["max_live_calls"] = _whole(raw["max_live_calls"], f"{path}.max_live_calls", errors)
    return CallRules(**rules) if len(errors) == before else None


def _budgets(raw: Any, path: str, errors: Errors) -> tuple[Budget, ...] | None:
    if not isinstance(raw, list) or not raw:
        errors.append(f"{path}: must be a non-empty list of {{tokens | cost | seconds, per}}")
        return None
    budgets = []
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        item = mapping(item, where, errors,
                       {"tokens": None, "cost": None, "seconds": None, "per": None})  # fmt: skip
        before = len(errors)
        if sum(key in item for key in ("tokens", "cost", "seconds")) != 1:
            errors.append(f"{where}: needs exactly one of tokens, cost, seconds")
        tokens = _whole(item["tokens"], f"{where}.tokens", errors) if "tokens" in item else None
        seconds = (_whole(item["seconds"], f"{where}.seconds", errors)
                   if "seconds" in item else None)  # fmt: skip
        cost = item.get("cost")
        if "cost" in item and (
            isinstance(cost, bool) or not isinstance(cost, int | float)
            or not math.isfinite(cost) or cost <= 0
        ):  # fmt: skip
            errors.append(f"{where}.cost: must be an amount in US dollars above 0")
        per = _duration(item.get("per"), f"{where}.per", errors)
        if len(errors) == before and per is not None:
            budgets.append(Budget(per, str(item["per"]).strip(), tokens,
                                  float(cost) if cost is not None else None, seconds))  # fmt: skip
    return tuple(budgets)


CALL_FIELDS: dict[str, Parser] = {"mode": _mode, "calls": _calls, "budgets": _budgets}
