"""Policy documents: parse, validate (every error named by its path) and resolve ``extends``.

Pure: a YAML-loaded ``dict`` goes in, a :class:`PolicySet` or a :class:`PolicyError`
listing every problem comes out. Nothing here touches Redis or the network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import session_schema as ref
from .errors import InvalidDocument, InvalidRequest
from .limits import LimitRule, parse_duration


class PolicyError(InvalidDocument):
    what = "policy document"


@dataclass(frozen=True, slots=True)
class NumberRange:
    min: float
    max: float
    default: float | None = None


@dataclass(frozen=True, slots=True)
class Instructions:
    mode: str  # fixed | prefix | client
    text: str = ""
    max_chars: int | None = None


@dataclass(frozen=True, slots=True)
class Tools:
    mode: str = "none"  # none | client | fixed
    names: tuple[str, ...] = ()
    list: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Transcription:
    models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TurnDetection:
    types: tuple[str, ...]
    allow_none: bool = False
    eagerness: tuple[str, ...] | None = None
    threshold: NumberRange | None = None
    prefix_padding_ms: NumberRange | None = None
    silence_duration_ms: NumberRange | None = None


@dataclass(frozen=True, slots=True)
class TokenCap:
    max: int
    default: int


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    disabled: bool = False
    models: tuple[str, ...] = ()
    voices: tuple[str, ...] | None = None
    modalities: tuple[tuple[str, ...], ...] | None = None
    input_audio_formats: tuple[str, ...] | None = None
    output_audio_formats: tuple[str, ...] | None = None
    temperature: NumberRange | None = None
    max_response_output_tokens: TokenCap | None = None
    instructions: Instructions | None = None
    tools: Tools = field(default_factory=Tools)
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    noise_reduction: tuple[str, ...] | None = None
    limits: tuple[LimitRule, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicySet:
    default_policy: str
    policies: Mapping[str, Policy]
    users: Mapping[str, str]
    policy_claim: str | None = None
    global_limits: tuple[LimitRule, ...] = ()

    def select(
        self,
        user_id: str,
        claims: Mapping[str, Any],
        assignments: Mapping[str, str] | None = None,
    ) -> Policy:
        """The user's assignment, else the policy named by ``policy_claim``, else the default.

        ``assignments`` (made at run time) take precedence over the file's ``users``; an
        assignment to a policy that no longer exists is ignored.
        """
        name = assignments.get(user_id) if assignments else None
        if name not in self.policies:
            name = self.users.get(user_id)
        if name is None and self.policy_claim is not None:
            claimed = claims.get(self.policy_claim)
            if isinstance(claimed, str) and claimed in self.policies:
                name = claimed
        return self.policies[name or self.default_policy]


# --- parsing ---------------------------------------------------------------------------

Errors = list[str]
Parser = Callable[[Any, str, Errors], Any]


def _mapping(raw: Any, path: str, errors: Errors, keys: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        errors.append(f"{path or '(document)'}: must be a mapping")
        return {}
    for key in raw:
        if key not in keys:
            errors.append(f"{path}.{key}: unknown key" if path else f"{key}: unknown key")
    return raw


def _string_list(allowed: tuple[str, ...] | None, *, what: str = "value") -> Parser:
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


def _range(low: float, high: float, *, with_default: bool, integral: bool = False) -> Parser:
    def parse(raw: Any, path: str, errors: Errors) -> NumberRange | None:
        keys = ("min", "max", "default") if with_default else ("min", "max")
        raw = _mapping(raw, path, errors, dict.fromkeys(keys))
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


def _temperature(raw: Any, path: str, errors: Errors) -> NumberRange | None:
    parsed: NumberRange | None = _range(*ref.TEMPERATURE_RANGE, with_default=True)(
        raw, path, errors
    )
    if parsed is not None and parsed.default is None:
        # The upstream's own default (0.8), pulled into the policy's range.
        parsed = NumberRange(parsed.min, parsed.max, min(max(0.8, parsed.min), parsed.max))
    return parsed


def _token_cap(raw: Any, path: str, errors: Errors) -> TokenCap | None:
    raw = _mapping(raw, path, errors, {"max": None, "default": None})
    low, high = ref.OUTPUT_TOKENS_RANGE
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


def _modalities(raw: Any, path: str, errors: Errors) -> tuple[tuple[str, ...], ...] | None:
    if not isinstance(raw, list) or not raw:
        errors.append(f"{path}: must be a non-empty list of modality sets")
        return None
    sets = []
    for i, item in enumerate(raw):
        parsed = _string_list(ref.MODALITIES, what="modality")(item, f"{path}[{i}]", errors)
        if parsed:
            sets.append(parsed)
    return tuple(sets)


def _instructions(raw: Any, path: str, errors: Errors) -> Instructions | None:
    raw = _mapping(raw, path, errors, {"mode": None, "text": None, "max_chars": None})
    mode = raw.get("mode")
    if mode not in ("fixed", "prefix", "client"):
        errors.append(f"{path}.mode: must be one of fixed, prefix, client")
        return None
    text = raw.get("text", "")
    if not isinstance(text, str):
        errors.append(f"{path}.text: must be a string")
        return None
    if mode in ("fixed", "prefix") and not text:
        errors.append(f"{path}.text: is required when mode is {mode}")
    max_chars = raw.get("max_chars")
    if max_chars is not None and (
        isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 0
    ):
        errors.append(f"{path}.max_chars: must be a whole number of at least 0")
        return None
    return Instructions(mode, text, max_chars)


def _tools(raw: Any, path: str, errors: Errors) -> Tools | None:
    raw = _mapping(raw, path, errors, {"mode": None, "names": None, "list": None})
    mode = raw.get("mode", "none")
    if mode == "none":
        for key in ("names", "list"):
            if key in raw:
                errors.append(f"{path}.{key}: not used when mode is none")
        return Tools()
    if mode == "client":
        names = _string_list(None)(raw.get("names"), f"{path}.names", errors)
        if "list" in raw:
            errors.append(f"{path}.list: not used when mode is client")
        return Tools("client", names=names or ())
    if mode == "fixed":
        tools = raw.get("list")
        if not isinstance(tools, list) or not tools:
            errors.append(f"{path}.list: must be a non-empty list of tools")
            return None
        for i, tool in enumerate(tools):
            try:
                ref.TOOL(tool, f"{path}.list[{i}]")
            except InvalidRequest as exc:
                errors.append(f"{exc.param}: {exc.message}")
            else:
                if not isinstance(tool.get("name"), str):
                    errors.append(f"{path}.list[{i}].name: is required")
        if "names" in raw:
            errors.append(f"{path}.names: not used when mode is fixed")
        return Tools("fixed", list=tuple(tools))
    errors.append(f"{path}.mode: must be one of none, client, fixed")
    return None


def _transcription(raw: Any, path: str, errors: Errors) -> Transcription | None:
    raw = _mapping(raw, path, errors, {"models": None})
    models = _string_list(ref.TRANSCRIPTION_MODELS, what="transcription model")(
        raw.get("models"), f"{path}.models", errors
    )
    return Transcription(models) if models else None


def _turn_detection(raw: Any, path: str, errors: Errors) -> TurnDetection | None:
    keys = (
        "types",
        "allow_none",
        "eagerness",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
    )
    raw = _mapping(raw, path, errors, dict.fromkeys(keys))
    types = _string_list(ref.TURN_DETECTION_TYPES, what="turn detection type")(
        raw.get("types", list(ref.TURN_DETECTION_TYPES)), f"{path}.types", errors
    )
    allow_none = raw.get("allow_none", False)
    if not isinstance(allow_none, bool):
        errors.append(f"{path}.allow_none: must be true or false")
    eagerness = None
    if "eagerness" in raw:
        eagerness = _string_list(ref.EAGERNESS, what="eagerness")(
            raw["eagerness"], f"{path}.eagerness", errors
        )
    ranges: dict[str, NumberRange | None] = {}
    bounds = {
        "threshold": (*ref.VAD_THRESHOLD_RANGE, False),
        "prefix_padding_ms": (0, 10_000, True),
        "silence_duration_ms": (0, 10_000, True),
    }
    for key, (low, high, integral) in bounds.items():
        if key in raw:
            parse = _range(low, high, with_default=False, integral=integral)
            ranges[key] = parse(raw[key], f"{path}.{key}", errors)
    if not types:
        return None
    return TurnDetection(types, allow_none is True, eagerness, **ranges)


def _limits(raw: Any, path: str, errors: Errors) -> tuple[LimitRule, ...]:
    if not isinstance(raw, list):
        errors.append(f"{path}: must be a list of {{limit, per, burst}}")
        return ()
    rules = []
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        item = _mapping(item, where, errors, {"limit": None, "per": None, "burst": None})
        limit: Any = item.get("limit")
        burst: Any = item.get("burst", limit)
        per = item.get("per")
        ok = True
        checks = [("limit", limit)] + ([("burst", burst)] if "burst" in item else [])
        for key, value in checks:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                errors.append(f"{where}.{key}: must be a whole number of at least 1")
                ok = False
        try:
            seconds = parse_duration(str(per))
        except ValueError as exc:
            errors.append(f"{where}.per: {exc}")
            ok = False
        if ok:
            rules.append(LimitRule(int(limit), seconds, int(burst), str(per).strip()))
    return tuple(rules)


def _bool(raw: Any, path: str, errors: Errors) -> bool:
    if not isinstance(raw, bool):
        errors.append(f"{path}: must be true or false")
        return False
    return raw


POLICY_FIELDS: dict[str, Parser] = {
    "disabled": _bool,
    "models": _string_list(ref.MODELS, what="model"),
    "voices": _string_list(ref.VOICES, what="voice"),
    "modalities": _modalities,
    "input_audio_formats": _string_list(ref.AUDIO_FORMATS, what="audio format"),
    "output_audio_formats": _string_list(ref.AUDIO_FORMATS, what="audio format"),
    "temperature": _temperature,
    "max_response_output_tokens": _token_cap,
    "instructions": _instructions,
    "tools": _tools,
    "transcription": _transcription,
    "turn_detection": _turn_detection,
    "noise_reduction": _string_list(ref.NOISE_REDUCTION_TYPES, what="noise reduction type"),
    "limits": _limits,
}
TOP_LEVEL = ("default_policy", "policy_claim", "global_limits", "policies", "users")


def _resolve(
    name: str,
    raw_policies: Mapping[str, Any],
    own: Mapping[str, dict[str, Any]],
    resolved: dict[str, dict[str, Any]],
    chain: tuple[str, ...],
    errors: Errors,
) -> dict[str, Any]:
    """The policy's fields merged over those of its ``extends`` chain, parents first."""
    if name in resolved:
        return resolved[name]
    fields = dict(own.get(name, {}))
    parent = raw_policies[name].get("extends") if isinstance(raw_policies[name], dict) else None
    if parent is not None:
        path = f"policies.{name}.extends"
        if not isinstance(parent, str) or parent not in raw_policies:
            errors.append(f"{path}: unknown policy {parent!r}")
        elif parent in chain:
            errors.append(f"{path}: cycle {' -> '.join((*chain, name, parent))}")
        else:
            inherited = _resolve(parent, raw_policies, own, resolved, (*chain, name), errors)
            fields = {**inherited, **fields}
    resolved[name] = fields
    return fields


def parse_policy_set(document: Any) -> PolicySet:
    """Validate a whole policy document; raise PolicyError naming every problem."""
    errors: Errors = []
    doc = _mapping(document, "", errors, dict.fromkeys(TOP_LEVEL))
    raw_policies = doc.get("policies")
    if not isinstance(raw_policies, dict) or not raw_policies:
        errors.append("policies: must be a non-empty mapping of name to policy")
        raise PolicyError(errors)

    own: dict[str, dict[str, Any]] = {}
    for name, raw in raw_policies.items():
        path = f"policies.{name}"
        raw = _mapping(raw or {}, path, errors, {**POLICY_FIELDS, "extends": None})
        own[name] = {
            key: POLICY_FIELDS[key](value, f"{path}.{key}", errors)
            for key, value in raw.items()
            if key in POLICY_FIELDS
        }

    policies: dict[str, Policy] = {}
    resolved: dict[str, dict[str, Any]] = {}
    for name in raw_policies:
        fields = {
            k: v
            for k, v in _resolve(name, raw_policies, own, resolved, (), errors).items()
            if v is not None
        }
        if not fields.get("disabled") and "models" not in fields:
            errors.append(f"policies.{name}.models: is required (directly or through extends)")
        policies[name] = Policy(name=str(name), **fields)

    default = doc.get("default_policy")
    if not isinstance(default, str) or default not in raw_policies:
        errors.append(f"default_policy: must name a policy (got {default!r})")
    claim = doc.get("policy_claim")
    if claim is not None and (not isinstance(claim, str) or not claim):
        errors.append("policy_claim: must be a claim name")
    users = doc.get("users") or {}
    if not isinstance(users, dict):
        errors.append("users: must be a mapping of user id to policy name")
        users = {}
    for user, name in users.items():
        if not isinstance(user, str) or not user:
            errors.append(f"users.{user}: user ids must be non-empty strings")
        elif not isinstance(name, str) or name not in raw_policies:
            errors.append(f"users.{user}: unknown policy {name!r}")
    global_limits = _limits(doc.get("global_limits", []), "global_limits", errors)

    if errors:
        raise PolicyError(errors)
    return PolicySet(
        default_policy=default,  # type: ignore[arg-type]  # checked above
        policies=policies,
        users=dict(users),
        policy_claim=claim,
        global_limits=global_limits,
    )
