"""What a policy may say for one upstream dialect: the core's keys (limits, calls,
budgets, mode) and each API family's section (tokenbroker.families), which names the
policy keys it reads, parses them, and makes its rules out of a policy's merged fields."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tokenbroker.policy.model import Policy
from tokenbroker.policy.primitives import Errors, Parser

# (the policy's path, its fields of this section after ``extends``, disabled?, errors)
Build = Callable[[str, dict[str, Any], bool, Errors], Any]


def _no_notes(policies: Iterable[Policy]) -> list[str]:
    return []


def _no_models(rules: Any) -> Iterable[str]:
    return ()


@dataclass(frozen=True, slots=True)
class Section:
    """One API family's part of a policy: kept at ``Policy.sections[name]``."""

    name: str
    fields: Mapping[str, Parser]  # the policy keys it reads, each with its parser
    build: Build
    notes: Callable[[Iterable[Policy]], list[str]] = _no_notes  # worth saying, not errors
    models: Callable[[Any], Iterable[str]] = _no_models  # the upstream models its rules name


@dataclass(frozen=True, slots=True)
class Vocabulary:
    dialect: str
    sections: tuple[Section, ...] = ()

    def notes(self, policies: Iterable[Policy]) -> list[str]:
        """What each family notes about valid policies (a model its reference lacks…)."""
        allowed = list(policies)
        return [note for section in self.sections for note in section.notes(allowed)]

    def models(self, policies: Iterable[Policy]) -> dict[str, list[str]]:
        """Every upstream model the policies name (any family's), with the policies naming
        it: what the model lifecycle watches for shutdown dates."""
        named: dict[str, list[str]] = {}
        for policy in policies:
            for section in self.sections:
                rules = policy.sections.get(section.name)
                for model in section.models(rules) if rules is not None else ():
                    names = named.setdefault(model, [])
                    if policy.name not in names:
                        names.append(policy.name)
        return named
