"""The mint flow, in one direction: auth → policy → limiter → upstream → reply.

Each step is a plain call on a dependency held by :class:`Broker`; HTTP stays in
``app.py``. ``MintLog`` collects what the request's log line says about the mint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .auth import Authenticator, bearer_token
from .enforce import enforce
from .errors import BrokerError, RateLimited, Unavailable
from .limiter import Limiter, rate_limit_headers
from .policy_store import PolicyCache
from .request_body import parse_body
from .session_schema import validate_session
from .upstream import Upstream, UpstreamError


@dataclass(slots=True)
class MintLog:
    """Facts about one mint for its log line; never a secret."""

    user: str | None = None  # hashed user id
    policy: str | None = None
    model: str | None = None
    outcome: str = "error"
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

    async def mint(self, authorization: Sequence[str], body: bytes, log: MintLog) -> MintReply:
        identity = await self.authenticator.verify(bearer_token(authorization))
        log.user = hash_user(identity.user_id)

        request = validate_session(parse_body(body))
        policies = self.policies.policies
        if policies is None:
            raise Unavailable(
                "store_unavailable", "Policies are not loaded yet.", headers={"Retry-After": "1"}
            )
        policy = self.policies.select(identity.user_id, identity.claims)
        log.policy = policy.name
        enforced = enforce(policy, request)
        log.model = enforced.session["model"]

        charge = await self.limiter.charge(identity.user_id, policy.limits, policies.global_limits)
        headers = rate_limit_headers(charge)
        if not charge.allowed:
            log.outcome = "rate_limited"
            headers["Retry-After"] = str(charge.retry_after_seconds)
            raise RateLimited(
                "rate_limit_exceeded",
                "Rate limit exceeded; retry after the Retry-After delay.",
                headers=headers,
            )

        try:
            minted = await self.upstream.create_session(enforced.session)
        except UpstreamError as exc:
            log.outcome = exc.error.code
            if exc.refundable:
                await self.limiter.refund(charge)
            error: BrokerError = exc.error
            error.headers.update(headers)
            raise error from None

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
