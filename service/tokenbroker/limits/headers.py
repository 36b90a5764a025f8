"""Rendering a charge as ``RateLimit-Policy`` / ``RateLimit`` headers (and ``Retry-After``)."""

from __future__ import annotations

import math

from tokenbroker.limits.gcra import Charge


def rate_limit_headers(charge: Charge) -> dict[str, str]:
    """``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers)."""
    if not charge.windows:
        return {}
    policies = ", ".join(
        f'"{w.scope}-{w.rule.name}";q={w.rule.limit};w={max(1, round(w.rule.per))}'
        for w in charge.windows
    )
    tightest = min(charge.windows, key=lambda w: (w.remaining, -w.reset_us))
    reset = max(0, math.ceil(tightest.reset_us / 1_000_000))
    if not charge.allowed:
        reset = charge.retry_after_seconds
    return {
        "RateLimit-Policy": policies,
        "RateLimit": f'"{tightest.scope}-{tightest.rule.name}";r={tightest.remaining};t={reset}',
    }
