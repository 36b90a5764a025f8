"""What a policy says, as plain frozen data, and how a user's policy is chosen."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenbroker.errors import InvalidDocument
from tokenbroker.limits.rules import Budget, LimitRule


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
class TokenCap:
    max: int
    default: int


@dataclass(frozen=True, slots=True)
class CallRules:
    """What the broker enforces on a live call for its whole life (the sideband)."""

    max_duration: float = 3600.0  # seconds; the upstream's own maximum is 60 minutes
    idle_timeout: float | None = None  # seconds without any event on the call
    on_violation: str = "revert"  # revert | hangup
    max_live_calls: int | None = None  # per user, across replicas


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    disabled: bool = False
    limits: tuple[LimitRule, ...] = ()
    # Live calls: ``mode: calls_only`` refuses client secrets (only watched calls exist)
    mode: str = "any"  # any | calls_only
    calls: CallRules = field(default_factory=CallRules)
    budgets: tuple[Budget, ...] = ()
    # each API family's rules (tokenbroker.families), by family: what its section made
    sections: Mapping[str, Any] = field(default_factory=dict)


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
