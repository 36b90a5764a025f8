"""Policy documents: parse, validate (every error named by its path) and resolve ``extends``.

Pure: a YAML-loaded ``dict`` goes in, a :class:`PolicySet` or a :class:`PolicyError`
listing every problem comes out. Nothing here touches Redis or the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenbroker.limits.rules import LimitRule, parse_duration
from tokenbroker.policy.document import load_policy_yaml
from tokenbroker.policy.fields_calls import CALL_FIELDS
from tokenbroker.policy.model import Policy, PolicyError, PolicySet
from tokenbroker.policy.primitives import Errors, Parser, mapping
from tokenbroker.policy.vocabulary import Vocabulary


def parse_limits(raw: Any, path: str, errors: Errors) -> tuple[LimitRule, ...]:
    if not isinstance(raw, list):
        errors.append(f"{path}: must be a list of {{limit, per, burst}}")
        return ()
    rules = []
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        item = mapping(item, where, errors, {"limit": None, "per": None, "burst": None})
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


# The core's fields of a policy (fields_calls.py, limits, disabled); the API families'
# sections add theirs (the vocabulary).
FIELDS: dict[str, Parser] = {**CALL_FIELDS, "limits": parse_limits, "disabled": _bool}
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


def parse_policy_set(document: Any, vocabulary: Vocabulary) -> PolicySet:
    """Validate a whole policy document for the upstream ``vocabulary``; raise PolicyError
    naming every problem."""
    errors: Errors = []
    doc = mapping(document, "", errors, dict.fromkeys(TOP_LEVEL))
    raw_policies = doc.get("policies")
    if not isinstance(raw_policies, dict) or not raw_policies:
        errors.append("policies: must be a non-empty mapping of name to policy")
        raise PolicyError(errors)

    fields_of = {**FIELDS}
    for section in vocabulary.sections:
        fields_of.update(section.fields)
    own: dict[str, dict[str, Any]] = {}
    for name, raw in raw_policies.items():
        path = f"policies.{name}"
        raw = mapping(raw or {}, path, errors, {**fields_of, "extends": None})
        own[name] = {
            key: fields_of[key](value, f"{path}.{key}", errors)
            for key, value in raw.items()
            if key in fields_of
        }

    policies: dict[str, Policy] = {}
    resolved: dict[str, dict[str, Any]] = {}
    for name in raw_policies:
        fields = {
            k: v
            for k, v in _resolve(name, raw_policies, own, resolved, (), errors).items()
            if v is not None
        }
        disabled = bool(fields.get("disabled"))
        sections = {
            section.name: section.build(
                f"policies.{name}",
                {key: fields.pop(key) for key in section.fields if key in fields},
                disabled,
                errors,
            )
            for section in vocabulary.sections
        }
        policies[name] = Policy(name=str(name), **fields, sections=sections)

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
    global_limits = parse_limits(doc.get("global_limits", []), "global_limits", errors)

    if errors:
        raise PolicyError(errors)
    return PolicySet(
        default_policy=default,  # type: ignore[arg-type]  # checked above
        policies=policies,
        users=dict(users),
        policy_claim=claim,
        global_limits=global_limits,
    )


def parse_policy_text(text: str, vocabulary: Vocabulary) -> PolicySet:
    """Parse YAML text and validate it; PolicyError on any problem."""
    return parse_policy_set(load_policy_yaml(text), vocabulary)
