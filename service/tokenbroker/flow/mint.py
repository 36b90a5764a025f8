"""The mint flow, in one direction: auth → policy → limiter → upstream → reply.

Each step is a plain call on a dependency held by :class:`Broker`; HTTP stays in
``http/``. The flow records what it learns on the request's :class:`RequestContext`
and raises the error that ends a request; the edge decides the outcome from that.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenbroker.auth.authenticator import Authenticator, bearer_token
from tokenbroker.errors import BrokerError, RateLimited, Unavailable
from tokenbroker.flow.context import RequestContext
from tokenbroker.infra.metrics import Metrics
from tokenbroker.infra.strict_json import parse_body
from tokenbroker.limits.gcra import Limiter
from tokenbroker.limits.headers import rate_limit_headers
from tokenbroker.policy.cache import PolicyCache
from tokenbroker.policy.enforce import enforce
from tokenbroker.policy.session import validate_session
from tokenbroker.upstream.client import Upstream
from tokenbroker.upstream.failures import UpstreamError


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

    async def mint(
        self, authorization: Sequence[str], body: bytes, log: RequestContext
    ) -> MintReply:
        identity = await self.authenticator.verify(bearer_token(authorization))
        log.identified(identity.user_id)
        user_id, claims = identity.user_id, identity.claims
        request = validate_session(parse_body(body))
        policies = self.policies.policies
        if policies is None:
            raise Unavailable("store_unavailable", "Policies are not loaded yet.",
                              headers={"Retry-After": "1"})  # fmt: skip
        policy = self.policies.select(user_id, claims)
        log.policy = policy.name
        enforced = enforce(policy, request)
        log.model = enforced.session["model"]
        log.voice = enforced.session.get("voice")

        charge = await self.limiter.charge(user_id, policy.limits, policies.global_limits)
        self.metrics.limiter_decision(charge.decision).inc()
        headers = rate_limit_headers(charge)
        if not charge.allowed:
            headers["Retry-After"] = str(charge.retry_after_seconds)
            raise RateLimited("rate_limit_exceeded",
                              "Rate limit exceeded; retry after the Retry-After delay.",
                              headers=headers)  # fmt: skip

        request_body, dropped = self.upstream.dialect.shape(enforced.session, {})
        started = time.perf_counter()
        try:
            minted = await self.upstream.create_session(request_body)
        except UpstreamError as exc:
            self._upstream_took(started, exc.error.code, log)
            if exc.failure.refundable:
                await self.limiter.refund(charge)
            error: BrokerError = exc.error
            error.headers.update(headers)
            raise error from None
        self._upstream_took(started, "ok", log)

        if enforced.adjusted or dropped:  # clamped, or not sent: this dialect lacks it
            headers["Policy-Adjusted"] = ", ".join((*enforced.adjusted, *dropped))
        return MintReply(
            {
                "client_secret": {"value": minted.value, "expires_at": minted.expires_at},
                "model": enforced.session["model"],
            },
            headers,
        )

    def _upstream_took(self, started: float, result: str, log: RequestContext) -> None:
        seconds = time.perf_counter() - started
        log.upstream_ms = round(seconds * 1000, 3)
        self.metrics.upstream_result(result).observe(seconds)
