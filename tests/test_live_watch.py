"""GPT-Live sessions watched for their whole life: the duration cap closes
the session on its sideband, cumulative usage counts once in seconds and dollars, a spent
budget closes the session and refuses the next, the backend's tokens are priced, drift of
the delegation is reverted, the owner reads and ends the session, another user cannot,
and why a session or call ended stays readable after its end."""

from __future__ import annotations

import json
import signal
import time
import uuid
from typing import Any

import httpx
import pytest

from conftest import POLICIES, StartBroker, make_token
from live import OFFER, Fake, call_id, create_call, metric
from servers import RedisServer, TokenbrokerServer, wait_until

LIVE = "/v1/live/sessions"
PRICES = {"gpt-live-1.1": {"active_per_minute": 0.05, "standby_per_minute": 0.02}}
BACKEND_PRICES = {"gpt-5-mini": {"text_input": 1000.0, "text_output": 4000.0}}  # per million
ADMIN = {"Authorization": "Bearer admin-CANARY-live-0123456789"}
ENV = {
    "TOKENBROKER_MCP_CRM": "mcp-CANARY-secret-1234",
    "TOKENBROKER_ADMIN_TOKEN": "admin-CANARY-live-0123456789",
}


class FakeLive:
    """The fake upstream's GPT-Live sessions, seen and driven from the test."""

    def __init__(self, url: str) -> None:
        self.url = url

    def state(self, sid: str) -> dict[str, Any]:
        reply = httpx.get(f"{self.url}/_fake/live/{sid}")
        reply.raise_for_status()
        return reply.json()  # type: ignore[no-any-return]

    def act(self, sid: str, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = httpx.post(f"{self.url}/_fake/live/{sid}/{action}", json=body or {})
        reply.raise_for_status()
        return reply.json()  # type: ignore[no-any-return]

    def watched(self, sid: str, connects: int = 1, limit: float = 10.0) -> None:
        wait_until(lambda: (s := self.state(sid))["connects"] >= connects and s["sidebands"] >= 1,
                   limit)  # fmt: skip

    def ended(self, sid: str, limit: float = 10.0) -> dict[str, Any]:
        wait_until(lambda: not self.state(sid)["live"], limit)
        return self.state(sid)


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker) -> TokenbrokerServer:
    return start_broker(POLICIES / "live.yaml", env=ENV, upstream={"dialect": "openai"},
                        live={"prices": PRICES}, calls={"prices": BACKEND_PRICES})  # fmt: skip


@pytest.fixture
def fake(fake_upstream_server: TokenbrokerServer) -> FakeLive:
    return FakeLive(fake_upstream_server.url)


def headers(sub: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(sub, **claims)}"}


def create(broker: TokenbrokerServer, sub: str, **claims: Any) -> httpx.Response:
    body = {"session": {}, "transport": {"type": "webrtc", "sdp": OFFER}}
    return httpx.post(broker.url + LIVE, json=body, headers=headers(sub, **claims))


def session_id(reply: httpx.Response) -> str:
    assert reply.status_code == 201, reply.text
    sid: str = reply.json()["session"]["id"]
    return sid


def info(broker: TokenbrokerServer, sid: str, sub: str, **claims: Any) -> dict[str, Any]:
    reply = httpx.get(f"{broker.url}{LIVE}/{sid}", headers=headers(sub, **claims))
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def user() -> str:
    return f"lw-{uuid.uuid4().hex[:10]}"


def test_the_duration_cap_closes_the_session(broker: TokenbrokerServer, fake: FakeLive) -> None:
    """A 2 s cap: session.close on the sideband within the cap + 2 s; the owner's GET says
    ended, duration, with the final usage (the upstream's 15 s minimum)."""
    sub = user()
    started = time.monotonic()
    sid = session_id(create(broker, sub, tier="short"))
    fake.watched(sid)
    state = fake.ended(sid, limit=6)
    assert time.monotonic() - started < 2 + 2
    assert state["closed_reason"] == "close_requested"
    assert {"type": "session.close"} in state["from_sideband"]
    wait_until(lambda: info(broker, sid, sub, tier="short")["status"] == "ended")
    ended = info(broker, sid, sub, tier="short")
    assert ended["reason"] == "duration" and ended["usage"]["seconds"] == 15
    assert metric(broker, "tokenbroker_call_ends_total", api="live", reason="duration") >= 1


def test_cumulative_usage_counts_the_difference_once(
    broker: TokenbrokerServer, fake: FakeLive
) -> None:
    """Figures 20, 40, 40, 70 count 70, not 170 (each is the total so far)."""
    sub = user()
    sid = session_id(create(broker, sub, tier="long_budget"))
    fake.watched(sid)
    for seconds in (20, 40, 40, 70):
        assert fake.act(sid, "usage", {"seconds": seconds})["delivered"] == 1
    wait_until(lambda: info(broker, sid, sub, tier="long_budget")["seconds_used"] == 70)
    shown = info(broker, sid, sub, tier="long_budget")
    assert shown["status"] == "live"
    assert shown["budgets"][0]["seconds_left"] == 1000 - 70


@pytest.mark.parametrize(("tier", "usage"), [
    ("seconds", {"seconds": 61}),
    ("costly", {"seconds": 61, "active_seconds": 61, "paused_seconds": 0}),
])  # fmt: skip
def test_a_spent_budget_closes_the_session_and_refuses_the_next(
    broker: TokenbrokerServer, fake: FakeLive, tier: str, usage: dict[str, int]
) -> None:
    """60 seconds a day, or $0.05 a day at $0.05 a minute: 61 seconds close the session
    (reason budget) and the next create is 429 budget_exhausted with its Retry-After."""
    sub = user()
    sid = session_id(create(broker, sub, tier=tier))
    fake.watched(sid)
    fake.act(sid, "usage", {"seconds": 30})
    time.sleep(0.2)  # a gap the watcher may use, not a wait for it
    assert fake.state(sid)["live"]
    fake.act(sid, "usage", usage)
    fake.ended(sid)
    wait_until(lambda: info(broker, sid, sub, tier=tier)["status"] == "ended")
    assert info(broker, sid, sub, tier=tier)["reason"] == "budget"
    refused = create(broker, sub, tier=tier)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "budget_exhausted"
    assert 0 < int(refused.headers["retry-after"]) <= 86400


def test_standby_seconds_cost_less(broker: TokenbrokerServer, fake: FakeLive) -> None:
    """61 s of which 40 paused cost 21 s at $0.05/60 + 40 s at $0.02/60, about $0.0308: under the
    $0.05 budget, the session goes on."""
    sub = user()
    sid = session_id(create(broker, sub, tier="costly"))
    fake.watched(sid)
    fake.act(sid, "usage", {"seconds": 61, "active_seconds": 21, "paused_seconds": 40})
    wait_until(lambda: info(broker, sid, sub, tier="costly")["seconds_used"] == 61)
    shown = info(broker, sid, sub, tier="costly")
    assert shown["status"] == "live"
    assert shown["budgets"][0]["usd_left"] == pytest.approx(0.05 - (21 * 0.05 + 40 * 0.02) / 60,
                                                            abs=1e-6)  # fmt: skip


def test_backend_tokens_are_priced_and_counted(broker: TokenbrokerServer, fake: FakeLive) -> None:
    """A delegated backend response's tokens (from response.event's response.completed)
    count against a token budget, once per response."""
    sub = user()
    sid = session_id(create(broker, sub, tier="tokens"))
    fake.watched(sid)
    event = {"type": "response.event", "delegation_id": "del_1", "event": {
        "type": "response.completed", "response": {
            "id": "resp_backend_1", "model": "gpt-5-mini",
            "usage": {"input_tokens": 300, "output_tokens": 100,
                      "input_tokens_details": {"cached_tokens": 100}}}}}  # fmt: skip
    fake.act(sid, "emit", event)
    fake.act(sid, "emit", event)  # delivered again: counted once
    wait_until(lambda: info(broker, sid, sub, tier="tokens")["budgets"][0]["tokens_left"] == 600)


def test_backend_tokens_are_priced_per_backend_model(
    broker: TokenbrokerServer, fake: FakeLive
) -> None:
    """The backend response's tokens cost what calls.prices says for its model: 200
    uncached input at $1 000 and 100 output at $4 000 a million (cached input unpriced)
    are $0.60 of a $1.00 budget."""
    sub = user()
    sid = session_id(create(broker, sub, tier="backend_cost"))
    fake.watched(sid)
    fake.act(sid, "emit", {"type": "response.event", "event": {
        "type": "response.completed", "response": {
            "id": "resp_backend_2", "model": "gpt-5-mini",
            "usage": {"input_tokens": 300, "output_tokens": 100,
                      "input_tokens_details": {"cached_tokens": 100}}}}})  # fmt: skip
    wait_until(lambda: info(broker, sid, sub, tier="backend_cost")["budgets"][0]["usd_left"]
               == pytest.approx(1.0 - 0.6, abs=1e-9))  # fmt: skip
    assert fake.state(sid)["live"]


def test_delegation_drift_is_reverted(broker: TokenbrokerServer, fake: FakeLive) -> None:
    """A session.updated with another backend model and MCP server is reverted with a
    session.update restoring the policy's delegation."""
    sub = user()
    sid = session_id(create(broker, sub, tier="drift_revert"))
    fake.watched(sid)
    enforced = fake.state(sid)["session"]["delegation"]
    drifted = {**fake.state(sid)["session"], "delegation": {"type": "responses", "responses": {
        "model": "gpt-5", "tools": [{"type": "mcp", "server_label": "evil",
                                     "server_url": "https://evil.example"}]}}}  # fmt: skip
    fake.act(sid, "emit", {"type": "session.updated", "session": drifted})
    wait_until(lambda: any(e["type"] == "session.update"
                           for e in fake.state(sid)["from_sideband"]))  # fmt: skip
    revert = next(e for e in fake.state(sid)["from_sideband"] if e["type"] == "session.update")
    assert revert["session"]["delegation"] == enforced
    assert fake.state(sid)["live"]


def test_the_owner_ends_the_session_and_no_one_else_can(
    broker: TokenbrokerServer, fake: FakeLive
) -> None:
    """Another user's DELETE and GET are 404 and change nothing; the owner's DELETE closes
    the session upstream, and the GET then says ended, client."""
    sub = user()
    sid = session_id(create(broker, sub))
    fake.watched(sid)
    other = httpx.delete(f"{broker.url}{LIVE}/{sid}", headers=headers(user()))
    assert other.status_code == 404 and other.json()["error"]["code"] == "session_not_found"
    assert httpx.get(f"{broker.url}{LIVE}/{sid}", headers=headers(user())).status_code == 404
    assert fake.state(sid)["live"]
    closed = httpx.delete(f"{broker.url}{LIVE}/{sid}", headers=headers(sub))
    assert closed.status_code == 200 and closed.json()["status"] == "ending"
    fake.ended(sid)
    wait_until(lambda: info(broker, sid, sub)["status"] == "ended")
    assert info(broker, sid, sub)["reason"] == "client"


def test_operators_list_and_close_live_sessions(broker: TokenbrokerServer, fake: FakeLive) -> None:
    """The admin API lists a GPT-Live session beside calls (api live) and closes it on its
    sideband; the owner's GET then says ended, operator."""
    sub = user()
    sid = session_id(create(broker, sub))
    fake.watched(sid)
    listed = httpx.get(f"{broker.url}/admin/calls", headers=ADMIN).json()["calls"]
    assert next(c for c in listed if c["call_id"] == sid)["api"] == "live"
    closed = httpx.post(f"{broker.url}/admin/calls/{sid}/hangup", headers=ADMIN)
    assert closed.status_code == 200 and closed.json()["ending"] is True
    assert fake.ended(sid)["closed_reason"] == "close_requested"
    wait_until(lambda: info(broker, sid, sub)["status"] == "ended")
    assert info(broker, sid, sub)["reason"] == "operator"


def test_why_a_realtime_call_ended(start_broker: StartBroker, fake_upstream_server: Any) -> None:
    """The end reasons for Realtime calls: a call ended by its duration cap reads ended,
    duration, with its usage, from the owner's GET; another user gets 404."""
    calls = start_broker(POLICIES / "calls.yaml", upstream={"dialect": "openai"})
    sub = user()
    cid = call_id(create_call(calls, sub, tier="short"))  # 2 s
    Fake(fake_upstream_server.url).ended(cid)

    def shown() -> dict[str, Any]:
        reply = httpx.get(
            f"{calls.url}/v1/realtime/calls/{cid}", headers=headers(sub, tier="short")
        )
        body: dict[str, Any] = reply.json()
        return body

    wait_until(lambda: shown().get("status") == "ended")
    assert shown()["reason"] == "duration" and "tokens" in shown()["usage"]
    other = httpx.get(f"{calls.url}/v1/realtime/calls/{cid}", headers=headers(user()))
    assert other.status_code == 404


def test_a_killed_watcher_s_session_is_adopted_and_counted_exactly(
    start_broker: StartBroker, redis_server: RedisServer, fake: FakeLive
) -> None:
    """Two replicas: kill -9 the watcher's, the other re-attaches within 10 s with one
    sideband at a time, and the cumulative figures after the adoption still count
    exactly (30 then 50: 50 in all)."""
    prefix = f"lw{uuid.uuid4().hex[:6]}"
    fleet = [start_broker(POLICIES / "live.yaml", env=ENV, upstream={"dialect": "openai"},
                          redis={"url": redis_server.url, "prefix": prefix},
                          calls={"lease": "3s", "renew_interval": "200ms"})
             for _ in range(2)]  # fmt: skip
    sub = user()
    sid = session_id(create(fleet[0], sub, tier="long_budget"))
    fake.watched(sid)
    fake.act(sid, "usage", {"seconds": 30})
    wait_until(lambda: info(fleet[1], sid, sub, tier="long_budget")["seconds_used"] == 30)
    fleet[0].stop(signal.SIGKILL)
    killed = time.monotonic()
    fake.watched(sid, connects=2, limit=10)
    assert time.monotonic() - killed < 10
    fake.act(sid, "usage", {"seconds": 30})  # delivered again: nothing more
    fake.act(sid, "usage", {"seconds": 50})
    wait_until(lambda: info(fleet[1], sid, sub, tier="long_budget")["seconds_used"] == 50)
    assert fake.state(sid)["most_sidebands"] == 1
    assert metric(fleet[1], "tokenbroker_call_adoptions_total") == 1
    spent = info(fleet[1], sid, sub, tier="long_budget")["budgets"][0]["seconds_left"]
    assert spent == 1000 - 50
    assert json.dumps(fake.state(sid)).count("mcp-CANARY") == 0


def test_sigterm_hands_sessions_over_instead_of_closing_them(
    start_broker: StartBroker, redis_server: RedisServer, fake: FakeLive
) -> None:
    """SIGTERM to the watching replica: its GPT-Live sessions are handed over (adopted by
    the other replica long before their 30 s leases could run out) and none is closed."""
    prefix = f"lh{uuid.uuid4().hex[:6]}"
    leaving, staying = (start_broker(POLICIES / "live.yaml", env=ENV,
                                     upstream={"dialect": "openai"},
                                     redis={"url": redis_server.url, "prefix": prefix},
                                     calls={"lease": "30s", "renew_interval": "200ms"})
                        for _ in range(2))  # fmt: skip
    sessions = [session_id(create(leaving, user())) for _ in range(2)]
    for sid in sessions:
        fake.watched(sid)
    assert leaving.stop(signal.SIGTERM) == 0
    stopped = time.monotonic()
    for sid in sessions:
        fake.watched(sid, connects=2, limit=10)
    assert time.monotonic() - stopped < 10
    for sid in sessions:
        state = fake.state(sid)
        assert state["live"] and state["most_sidebands"] == 1
        assert {"type": "session.close"} not in state["from_sideband"]
    assert metric(staying, "tokenbroker_call_adoptions_total") == 2
