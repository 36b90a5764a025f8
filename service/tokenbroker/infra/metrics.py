"""Prometheus metrics (prometheus-client), one registry per app. No per-user labels:
label values are policy names, outcome codes and fixed words only."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.mints = Counter(
            "tokenbroker_mints", "Mint requests by policy and outcome (minted or error code).",
            ["policy", "outcome"], registry=r,
        )  # fmt: skip
        self.mint_seconds = Histogram(
            "tokenbroker_mint_duration_seconds", "End-to-end time of mint requests.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_seconds = Histogram(
            "tokenbroker_upstream_duration_seconds",
            "Time of the upstream call (retries included), by result.",
            ["result"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_retries = Counter(
            "tokenbroker_upstream_retries", "Upstream attempts retried.", registry=r
        )
        self.limiter = Counter(
            "tokenbroker_limiter_decisions",
            "Rate-limit decisions: allowed, denied, unlimited (fail_mode open), local.",
            ["decision"], registry=r,
        )  # fmt: skip
        self.store_errors = Counter(
            "tokenbroker_store_errors", "Redis errors on the mint path.", registry=r
        )
        self.jwks_fetches = Counter(
            "tokenbroker_jwks_fetches", "JWKS fetches by provider and result.",
            ["provider", "result"], registry=r,
        )  # fmt: skip
        self.audit = Counter(
            "tokenbroker_audit_entries", "Audit entries by fate: written, dropped.",
            ["fate"], registry=r,
        )  # fmt: skip
        self.circuit = Gauge(
            "tokenbroker_circuit_state", "Circuit breakers: 0 closed, 1 half-open, 2 open.",
            ["dependency"], registry=r,
        )  # fmt: skip
        self.policy_version = Gauge(
            "tokenbroker_policy_version", "Policy version this replica serves.", registry=r
        )
        self.draining = Gauge(
            "tokenbroker_draining", "1 while this replica shuts down gracefully.", registry=r
        )
        self.model_days_to_shutdown = Gauge(
            "tokenbroker_model_days_to_shutdown", "Days until a model the policies name shuts "
            "down, as the upstream's model list announces (only models with a date).",
            ["model"], registry=r,
        )  # fmt: skip
        self.live_calls = Gauge(
            "tokenbroker_live_calls", "Live calls (api realtime) and GPT-Live sessions (api "
            "live) this replica watches (holds the sideband of).", ["api"], registry=r,
        )  # fmt: skip  # fmt: skip
        self.call_ends = Counter(
            "tokenbroker_call_ends",
            "Live calls and GPT-Live sessions ended, by API family (realtime, live) and reason: "
            "client, hangup, duration, idle, budget, violation, operator, upstream.",
            ["api", "reason"], registry=r,
        )  # fmt: skip
        self.call_tokens = Counter(
            "tokenbroker_call_usage_tokens", "Tokens used by live calls, by modality and kind.",
            ["kind"], registry=r,
        )  # fmt: skip
        self.call_cost = Counter(
            "tokenbroker_call_usage_cost_usd", "Cost of live calls' usage, from the price table.",
            registry=r,
        )  # fmt: skip
        self.call_unpriced = Counter(
            "tokenbroker_call_usage_unpriced", "Responses of models missing from the price table.",
            registry=r,
        )  # fmt: skip
        self.call_usage_lost = Counter(
            "tokenbroker_call_usage_lost", "Responses whose usage the store did not take "
            "within a minute of retries (not counted).", registry=r,
        )  # fmt: skip
        self.call_reverts = Counter(
            "tokenbroker_call_reverts",
            "Session drifts reverted with a session.update, by API family.",
            ["api"],
            registry=r,
        )
        self.call_adoptions = Counter(
            "tokenbroker_call_adoptions", "Live calls and GPT-Live sessions adopted from a "
            "replica that stopped renewing (or handed them over), by API family.", ["api"],
            registry=r,
        )  # fmt: skip
        self.call_cancels = Counter(
            "tokenbroker_call_cancels", "Responses cancelled on live calls because a budget "
            "of their user's was spent.", registry=r,
        )  # fmt: skip
        self.call_leases_lapsed = Counter(
            "tokenbroker_call_leases_lapsed", "Live calls let go because their lease could not "
            "be renewed in time (Redis unavailable); adopted again once it returns.", registry=r,
        )  # fmt: skip
        self.sideband_reconnects = Counter(
            "tokenbroker_sideband_reconnects", "Sideband WebSockets re-opened after a break.",
            registry=r,
        )  # fmt: skip
        # The per-mint children, remembered: labels() takes a lock and checks every value
        # on each call (~2 µs, three times a mint); the label values are few.
        self.mint_outcome = _remembered(self.mints)
        self.limiter_decision = _remembered(self.limiter)
        self.upstream_result = _remembered(self.upstream_seconds)

    def watch_circuit(self, dependency: str, state: Callable[[], str]) -> None:
        self.circuit.labels(dependency).set_function(lambda: _CIRCUIT_VALUES[state()])

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _remembered(metric: Counter | Histogram) -> Callable[..., Any]:
    return functools.lru_cache(maxsize=4096)(metric.labels)
