"""The steps every API family's flow takes, in one direction: auth → policy → budgets →
limiter → the family's upstream call → reply (each family's flow: tokenbroker.families).

Each step is a plain call on a dependency held by :class:`Broker`; HTTP stays in
``http/``. The flow records what it learns on the request's :class:`RequestContext`
and raises the error that ends a request; the edge decides the outcome from that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tokenbroker.auth.authenticator import Authenticator
from tokenbroker.auth.bearer import bearer_token
from tokenbroker.errors import BrokerError, PermissionDenied, RateLimited, Unavailable
from tokenbroker.flow.context import RequestContext
from tokenbroker.infra.metrics import Metrics
from tokenbroker.infra.redis import STORE_ERRORS
from tokenbroker.limits.gcra import Limiter
from tokenbroker.limits.headers import rate_limit_headers
from tokenbroker.limits.ledger import UsageLedger, retry_after
from tokenbroker.limits.rules import LimitRule
from tokenbroker.policy.cache import PolicyCache
from tokenbroker.policy.model import Policy
from tokenbroker.upstream.client import Upstream
from tokenbroker.upstream.failures import UpstreamError

T = TypeVar("T")


def policy_adjusted(names: Iterable[str], paths: Callable[[str], str] | None = None) -> str:
    """The Policy-Adjusted header: each field once (clamped and then not sent is one
    field), named as the request has it (``paths``: GA requests)."""
    return ", ".join(dict.fromkeys(map(paths, names) if paths else names))


@dataclass(frozen=True, slots=True)
class MintReply:
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass(slots=True)
class Broker:
    authenticator: Authenticator
    policies: PolicyCache
    limiter: Limiter
    upstream: Upstream
    metrics: Metrics
    ledger: UsageLedger | None = None  # usage budgets (live calls); None: budgets not kept

    async def identify(
        self, authorization: Sequence[str], log: RequestContext
    ) -> tuple[str, Mapping[str, Any]]:
        identity = await self.authenticator.verify(bearer_token(authorization))
        log.identified(identity.user_id)
        return identity.user_id, identity.claims

    def policy(
        self, user_id: str, claims: Mapping[str, Any], log: RequestContext
    ) -> tuple[Policy, tuple[LimitRule, ...]]:
        policies = self.policies.policies
        if policies is None:
            raise Unavailable("store_unavailable", "Policies are not loaded yet.",
                              headers={"Retry-After": "1"})  # fmt: skip
        policy = self.policies.select(user_id, claims)
        log.policy = policy.name
        return policy, policies.global_limits

    async def admit(self, user_id: str, policy: Policy, *, call: bool) -> None:
        """Refuse a client secret under ``mode: calls_only``, and anything once a budget of
        the user's is spent (429 ``budget_exhausted`` until its window ends)."""
        if not call and policy.mode == "calls_only":
            raise PermissionDenied("calls_only", "Your policy allows live calls only "
                                   "(POST /v1/realtime/calls), not client secrets.")  # fmt: skip
        if not policy.budgets or self.ledger is None:
            return
        try:
            spent = await self.ledger.spent(user_id, policy.budgets)
        except STORE_ERRORS:
            self.metrics.store_errors.inc()
            raise Unavailable("store_unavailable", "The usage store is unavailable; retry.",
                              headers={"Retry-After": "1"}) from None  # fmt: skip
        wait = retry_after(spent, self.ledger.now())
        if wait is not None:
            message = "Your usage budget is spent; retry after the Retry-After delay."
            raise RateLimited("budget_exhausted", message, headers={"Retry-After": str(wait)})

    async def charged(
        self,
        user_id: str,
        policy: Policy,
        global_limits: tuple[LimitRule, ...],
        attempt: Callable[[], Awaitable[T]],
        log: RequestContext,
    ) -> tuple[T, dict[str, str]]:
        """Charge the limits, make the upstream ``attempt``, give the charge back if it
        failed in a way that leaves the user with nothing."""
        charge = await self.limiter.charge(user_id, policy.limits, global_limits)
        self.metrics.limiter_decision(charge.decision).inc()
        headers = rate_limit_headers(charge)
        if not charge.allowed:
            headers["Retry-After"] = str(charge.retry_after_seconds)
            raise RateLimited("rate_limit_exceeded",
                              "Rate limit exceeded; retry after the Retry-After delay.",
                              headers=headers)  # fmt: skip
        started = time.perf_counter()
        try:
            result = await attempt()
        except asyncio.CancelledError:  # the shutdown grace ran out: nothing given, no charge
            await self.limiter.refund(charge)
            raise
        except UpstreamError as exc:
            self._upstream_took(started, exc.error.code, log)
            if exc.failure.refundable:
                await self.limiter.refund(charge)
            error: BrokerError = exc.error
            error.headers.update(headers)
            raise error from None
        except BaseException:
            await self.limiter.refund(charge)
            raise
        self._upstream_took(started, "ok", log)
        return result, headers

    def _upstream_took(self, started: float, result: str, log: RequestContext) -> None:
        seconds = time.perf_counter() - started
        log.upstream_ms = round(seconds * 1000, 3)
        self.metrics.upstream_result(result).observe(seconds)
