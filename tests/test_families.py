"""A third API family is one folder: the core takes its policy section through a
``Section`` (its keys, their parsers, its rules, its notes) and knows nothing else of it.

Checked with a family made here, next to the two shipped ones, and with the shipped
vocabulary itself: each family's keys land in its own section, errors are named by path,
and a key no family reads is refused."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from tokenbroker.families import vocabulary
from tokenbroker.families.realtime.rules import RealtimeRules, rules_of
from tokenbroker.policy.model import Policy, PolicyError
from tokenbroker.policy.parse import parse_policy_text
from tokenbroker.policy.primitives import Errors
from tokenbroker.policy.vocabulary import Section, Vocabulary


def _greeting(raw: Any, path: str, errors: Errors) -> str | None:
    if not isinstance(raw, str) or not raw:
        errors.append(f"{path}: must be a non-empty string")
        return None
    return raw


def _build(path: str, fields: dict[str, Any], disabled: bool, errors: Errors) -> Any:
    return {"greeting": fields.get("greeting"), "disabled": disabled}


def _notes(policies: Iterable[Policy]) -> list[str]:
    return [f"echo in {p.name}" for p in policies if p.sections["echo"]["greeting"]]


ECHO = Section("echo", {"greeting": _greeting}, _build, _notes)
SHIPPED = vocabulary("openai")
WITH_ECHO = Vocabulary("openai", (*SHIPPED.sections, ECHO))
DOCUMENT = """
default_policy: a
policies:
  a: {models: [gpt-realtime], voices: [marin], greeting: hello, limits: [{limit: 5, per: 1m}]}
  b: {extends: a, disabled: true}
"""


def test_a_new_family_is_a_section() -> None:
    """Its keys are parsed into its own section (inherited through ``extends`` like any
    key), the Realtime section keeps its own, the core keeps limits and ``disabled``."""
    policies = parse_policy_text(DOCUMENT, WITH_ECHO).policies
    assert policies["a"].sections["echo"] == {"greeting": "hello", "disabled": False}
    assert policies["b"].sections["echo"] == {"greeting": "hello", "disabled": True}
    assert rules_of(policies["a"]).voices == ("marin",)
    assert [r.limit for r in policies["b"].limits] == [5]
    assert WITH_ECHO.notes(policies.values()) == ["echo in a", "echo in b"]


def test_without_the_family_its_keys_are_unknown() -> None:
    """The shipped vocabulary has no ``greeting``: refused by path, not ignored."""
    with pytest.raises(PolicyError) as caught:
        parse_policy_text(DOCUMENT, SHIPPED)
    assert caught.value.errors == ["policies.a.greeting: unknown key"]


def test_a_family_names_its_errors_by_path() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy_text(DOCUMENT.replace("greeting: hello", "greeting: 3"), WITH_ECHO)
    assert caught.value.errors == ["policies.a.greeting: must be a non-empty string"]


def test_each_family_keeps_to_its_section() -> None:
    """A policy with only a GPT-Live section still has Realtime rules (its models are
    required by the Realtime section, as before); a policy made by hand has none."""
    text = "default_policy: a\npolicies:\n  a: {models: [m], live: {models: [gpt-live-1]}}\n"
    policy = parse_policy_text(text, SHIPPED).policies["a"]
    assert policy.sections["live"].models == ("gpt-live-1",)
    assert rules_of(policy).models == ("m",)
    assert rules_of(Policy(name="bare")) == RealtimeRules()
    with pytest.raises(PolicyError) as caught:
        parse_policy_text("default_policy: a\npolicies:\n  a: {voices: [marin]}\n", SHIPPED)
    assert caught.value.errors == ["policies.a.models: is required (directly or through extends)"]
