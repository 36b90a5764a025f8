"""The mint flow, in one direction: auth → policy → limiter → upstream → reply.

Each step is a plain call on a dependency held by :class:`Broker`; HTTP stays in
``app.py``. ``MintLog`` carries what the request's log line, its metrics and its audit
entry say about the mint.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenbroker.auth.authenticator import Authenticator, bearer_token
from tokenbroker.errors import BrokerError, RateLimited, Unavailable
from tokenbroker.infra.audit import AuditTrail
from tokenbroker.infra.metrics import Metrics
from tokenbroker.infra.strict_json import parse_body
from tokenbroker.limits.gcra import Limiter
from tokenbroker.limits.headers import rate_limit_headers
from tokenbroker.policy.cache import PolicyCache
from tokenbroker.policy.enforce import enforce
from tokenbroker.policy.session import validate_session
from tokenbroker.upstream.client import Upstream, UpstreamError


@dataclass(slots=True)
class MintLog:
    """Facts about one request for its log line and audit entry; never a secret."""

    request_id: str = ""
    client_ip: str = ""
    user_agent: str = ""
    user: str | None = None  # hashed user id (logs); the audit trail keeps the real one
    policy: str | None = None
    model: str | None = None
    voice: str | None = None
    outcome: str = "error"
    upstream_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MintReply:
    body: dict[str, Any]
    headers: dict[str, str]


def hash_user(user_id: str) -> str:
    return hashlib.blake2b(user_id.encode(), digest_size=8).hexdigest()


@dataclass(slots=True)
class Broker:
    authenticator: Authenticator
    policies: PolicyCache
    limiter: Limiter
    upstream: Upstream
    audit: AuditTrail
    metrics: Metrics

    async def mint(self, authorization: Sequence[str], body: bytes, log: MintLog) -> MintReply:
        identity = await self.authenticator.verify(bearer_token(authorization))
        log.user = hash_user(identity.user_id)
        try:
            return await self._mint(identity.user_id, identity.claims, body, log)
        except BrokerError as exc:
            if log.outcome in ("error", "minted"):
                log.outcome = exc.code
            raise
        finally:
            self.audit.record({
                "user": identity.user_id, "policy": log.policy or "", "model": log.model or "",
                "voice": log.voice or "", "outcome": log.outcome, "request_id": log.request_id,
                "ip": log.client_ip, "user_agent": log.user_agent[:256],
            })  # fmt: skip

    async def _mint(self, user_id: str, claims: Any, body: bytes, log: MintLog) -> MintReply:
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
        self.metrics.limiter_decision("allowed" if charge.allowed else "denied").inc()
        headers = rate_limit_headers(charge)
        if not charge.allowed:
            log.outcome = "rate_limited"
            headers["Retry-After"] = str(charge.retry_after_seconds)
            raise RateLimited("rate_limit_exceeded",
                              "Rate limit exceeded; retry after the Retry-After delay.",
                              headers=headers)  # fmt: skip

        started = time.perf_counter()
        try:
            minted = await self.upstream.create_session(enforced.session)
        except UpstreamError as exc:
            self._upstream_took(started, exc.error.code, log)
            log.outcome = exc.error.code
            if exc.refundable:
                await self.limiter.refund(charge)
            error: BrokerError = exc.error
            error.headers.update(headers)
            raise error from None
        self._upstream_took(started, "ok", log)

        if enforced.adjusted:
            headers["Policy-Adjusted"] = ", ".join(enforced.adjusted)
        log.outcome = "minted"
        return MintReply(
            {
                "client_secret": {"value": minted.value, "expires_at": minted.expires_at},
                "model": enforced.session["model"],
            },
            headers,
        )

    def _upstream_took(self, started: float, result: str, log: MintLog) -> None:
        seconds = time.perf_counter() - started
        log.upstream_ms = round(seconds * 1000, 3)
        self.metrics.upstream_result(result).observe(seconds)
