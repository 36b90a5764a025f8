"""A budget crossed in a burst: every one of the user's calls, on every replica, cancels its
responses in flight at once and is hung up; what really happened is counted in full, and
the overrun is only what the responses used before the cancel reached them."""

from __future__ import annotations

import uuid

import httpx
import pytest

from conftest import POLICIES, StartBroker
from live import Fake, call_id, create_call, metric, user
from servers import RedisServer, TokenbrokerServer, wait_until

CALLS = 10  # five on each replica
BUDGET = 1000  # the `tokens` policy: 1 000 tokens a day
RESPONSES, TOKENS, EVERY_MS, CANCELLED_TOKENS = 100, 100, 2, 10


@pytest.fixture
def fleet(start_broker: StartBroker, redis_server: RedisServer) -> list[TokenbrokerServer]:
    prefix = f"burst{uuid.uuid4().hex[:6]}"
    return [
        start_broker(
            POLICIES / "calls.yaml",
            upstream={"dialect": "openai"},
            redis={"url": redis_server.url, "prefix": prefix},
            calls={"lease": "4s", "renew_interval": "200ms"},
        )
        for _ in range(2)
    ]


def test_a_burst_past_the_budget_is_cancelled_on_every_call(
    fleet: list[TokenbrokerServer], fake_upstream_server: TokenbrokerServer
) -> None:
    """Ten calls of one user on two replicas each start 100 responses of 100 tokens, one
    finishing every 2 ms (the page decides when responses start): once 1 000 tokens are
    crossed, every call gets response.cancel (on both replicas; the first of each within
    half a second of each other, the fake upstream's own backlog included) and is hung
    up; every token the fake upstream reported is counted, cancelled responses' partial
    usage included; and the overrun past the budget is what finished before the cancels
    and what the cancelled responses had used, far short of the bursts."""
    fake = Fake(fake_upstream_server.url)
    sub = user()
    calls = [call_id(create_call(b, sub, tier="tokens")) for b in fleet * (CALLS // 2)]
    for cid in calls:
        fake.watched(cid)
    httpx.post(f"{fake.url}/_fake/responses", json={
        "calls": calls, "count": RESPONSES, "tokens": TOKENS, "every_ms": EVERY_MS,
        "cancelled_tokens": CANCELLED_TOKENS}).raise_for_status()  # fmt: skip
    states = [fake.ended(cid) for cid in calls]
    assert all(s["ended_by"] == "hangup" for s in states)
    assert all(s["cancel_times"] for s in states), [s["cancel_times"] for s in states]
    firsts = [min(s["cancel_times"]) for s in states]
    assert max(firsts) - min(firsts) < 0.5
    reported = sum(s["reported_tokens"] for s in states)

    def counted() -> float:
        return sum(
            metric(b, "tokenbroker_call_usage_tokens_total", kind="text_input") for b in fleet
        )

    wait_until(lambda: counted() == reported)
    completed = [s["completed"] for s in states]
    assert sum(completed) * TOKENS >= BUDGET  # the budget was crossed by finished responses
    assert max(completed) <= 20, completed  # cut short (≤ 40 ms at this pace), not run out
    assert all(s["cancelled"] for s in states)  # each had responses in flight, cancelled
    overrun = reported - BUDGET  # what finished before the cancels, and what they had used
    assert overrun <= sum(c * TOKENS for c in completed) + sum(
        s["cancelled"] * CANCELLED_TOKENS for s in states
    )
    ends = sum(metric(b, "tokenbroker_call_ends_total", reason="budget") for b in fleet)
    assert ends == CALLS
    refused = create_call(fleet[1], sub, tier="tokens")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "budget_exhausted"
