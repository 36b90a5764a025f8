"""Operator actions on policies and users, shared by the CLI and the admin HTTP API.

Failures are BrokerErrors (400 ``invalid_policy``, 404 ``not_found``) so the admin API
renders them like every other error and the CLI prints their message.
"""

from __future__ import annotations

import asyncio
import difflib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tokenbroker.errors import InvalidRequest, NotFound
from tokenbroker.infra.audit import AuditTrail
from tokenbroker.limits.gcra import LimitState
from tokenbroker.limits.ledger import UsageLedger
from tokenbroker.policy.model import PolicyError, PolicySet
from tokenbroker.policy.parse import parse_policy_text
from tokenbroker.policy.store import PolicyStore, PolicyVersion
from tokenbroker.policy.vocabulary import Vocabulary
from tokenbroker.registry.registry import CallRecord, CallRegistry


def _invalid(exc: PolicyError) -> InvalidRequest:
    return InvalidRequest("invalid_policy", "; ".join(exc.errors), param="policy")


async def validate(text: str, vocabulary: Vocabulary) -> PolicySet:
    """The document in ``text``, parsed in a worker thread: a large or hostile file must not
    hold the event loop (and every mint waiting on it) for its parse."""
    try:
        return await asyncio.to_thread(parse_policy_text, text, vocabulary)
    except PolicyError as exc:
        raise _invalid(exc) from None


@dataclass(frozen=True, slots=True)
class Applied:
    diff: str
    version: int | None  # None for a dry run
    notes: tuple[str, ...] = ()  # what the families note (a model their reference lacks)


class Operations:
    def __init__(
        self,
        store: PolicyStore,
        limits: LimitState,
        audit: AuditTrail,
        vocabulary: Vocabulary,
        *,
        registry: CallRegistry | None = None,
        ledger: UsageLedger | None = None,
        end_call: Callable[[CallRecord, str], Awaitable[bool]] | None = None,
    ) -> None:
        """``vocabulary``: what a policy may say for the broker's upstream dialect;
        ``registry``, ``ledger`` and ``end_call`` (mark and hang up): live calls."""
        self.store = store
        self.registry = registry
        self.ledger = ledger
        self._end_call = end_call
        self.vocabulary = vocabulary
        self.limits = limits
        self.audit = audit

    async def live(self) -> tuple[PolicyVersion | None, PolicySet | None]:
        version = (await self.store.stamp()).version
        record = await self.store.get(version) if version else None
        if record is None:
            return None, None
        try:
            return record, await asyncio.to_thread(parse_policy_text, record.text,
                                                   self.vocabulary)  # fmt: skip
        except PolicyError:
            return record, None

    async def apply(self, text: str, *, dry_run: bool = False, note: str = "") -> Applied:
        """Validate, diff against the live version, and (unless a dry run) apply."""
        document = await validate(text, self.vocabulary)
        notes = tuple(self.vocabulary.notes(document.policies.values()))
        live, _ = await self.live()
        before = live.text if live else ""
        name = f"live (version {live.version})" if live else "live (none)"
        diff = "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True), text.splitlines(keepends=True), name, "new"
            )
        )
        if dry_run:
            return Applied(diff, None, notes)
        return Applied(diff, await self.store.apply(text, note=note), notes)

    async def rollback(self, version: int) -> int:
        target = await self.store.get(version)
        if target is None:
            raise NotFound("not_found", f"No policy version {version}.")
        await validate(target.text, self.vocabulary)
        return await self.store.apply(target.text, note=f"rollback to {version}")

    async def history(self) -> list[PolicyVersion]:
        return await self.store.history()

    async def assign(self, user_id: str, policy: str) -> None:
        _, policies = await self.live()
        if policies is None or policy not in policies.policies:
            raise NotFound("not_found", f"No policy named {policy!r} in the live version.")
        await self.store.assign(user_id, policy)

    async def unassign(self, user_id: str) -> None:
        await self.store.assign(user_id, None)

    async def user(self, user_id: str) -> dict[str, Any]:
        """The user's policy (without token claims) and the state of their limits."""
        record, policies = await self.live()
        if policies is None:
            raise NotFound("not_found", "No valid policy version is live.")
        assigned = (await self.store.assignments()).get(user_id)
        policy = policies.select(user_id, {}, {user_id: assigned} if assigned else None)
        source = (
            "assignment"
            if assigned == policy.name
            else "policy file users"
            if user_id in policies.users
            else "default_policy (or the token's policy claim)"
        )
        windows = await self.limits.peek(user_id, policy.limits)
        return {
            "user": user_id,
            "policy": policy.name,
            "policy_source": source,
            "policy_version": record.version if record else None,
            "limits": [
                {
                    "window": w.rule.name,
                    "limit": w.rule.limit,
                    "burst": w.rule.burst,
                    "remaining": w.remaining,
                    "full_in_seconds": math.ceil(w.reset_us / 1_000_000),
                }
                for w in windows
            ],
            "recent_mints": await self.audit.read(user=user_id, count=10),
            **await self._live_state(user_id, policy),
        }

    async def _live_state(self, user_id: str, policy: Any) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.ledger is not None:
            state["budgets"] = [s.left for s in await self.ledger.spent(user_id, policy.budgets)]
        if self.registry is not None:
            state["live_calls"] = await self.registry.user_calls(user_id)
        return state

    async def calls(self) -> list[dict[str, Any]]:
        """Every live call: who, which policy, since when, until when, watched by whom."""
        if self.registry is None:
            return []
        now = time.time()
        return [
            {"call_id": r.call_id, "api": r.api, "user": r.user_id, "policy": r.policy,
             "model": r.session.get("model"), "started_at": int(r.started),
             "ends_at": int(r.deadline), "owner": r.owner or None,
             "lease_left_seconds": round(max(lease - now, 0.0), 1),
             "ending": r.end_reason or None}
            for r, lease in await self.registry.all()
        ]  # fmt: skip

    async def hang_up(self, call_id: str) -> dict[str, Any]:
        """End a live call as the operator (reason ``operator``)."""
        record = await self.registry.get(call_id) if self.registry is not None else None
        if record is None or self._end_call is None:
            raise NotFound("not_found", f"No live call {call_id!r}.")
        ended = await self._end_call(record, "operator")
        return {"call_id": call_id, "ending": ended}

    async def reset(self, user_id: str) -> None:
        await self.limits.reset(user_id)
