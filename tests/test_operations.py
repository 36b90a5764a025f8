"""Operations: upstream faults and retries, graceful shutdown, metrics, the audit trail."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from conftest import API_KEY, FakeUpstream, StartBroker, make_token
from servers import RedisServer, TokenbrokerServer, free_port, wait_until

SESSIONS = "/v1/realtime/sessions"


def mint(broker: TokenbrokerServer, token: str, **headers: str) -> httpx.Response:
    return httpx.post(
        broker.url + SESSIONS,
        json={},
        timeout=30,
        headers={"Authorization": f"Bearer {token}", **headers},
    )


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker) -> TokenbrokerServer:
    return start_broker(upstream={"timeout": "1s", "retries": 2})


class TestUpstreamFaults:
    @pytest.mark.parametrize(
        ("faults", "status", "code", "calls"),
        [
            (["500"], 200, None, 2),  # retried once, then success
            (["502", "503", "504"], 502, "upstream_error", 3),  # retried twice, then given up
            (["500", "500", "500"], 502, "upstream_error", 3),
            (["reset"], 200, None, 2),  # connection dropped mid-reply: retried
            (["reset", "reset", "reset"], 502, "upstream_error", 3),
            (["429"], 503, "upstream_rate_limited", 1),
            (["401"], 502, "upstream_auth_failed", 1),
            (["400"], 502, "upstream_rejected", 1),
            (["invalid_json"], 502, "upstream_invalid_response", 1),
            (["no_secret"], 502, "upstream_invalid_response", 1),
            (["hang"], 504, "upstream_timeout", 1),
        ],
    )
    def test_fault_maps_and_refunds(
        self,
        broker: TokenbrokerServer,
        upstream: FakeUpstream,
        faults: list[str],
        status: int,
        code: str | None,
        calls: int,
    ) -> None:
        """Each fault gets its status (never a 500), with the right number of attempts, and a
        failed mint's charge comes back (except after an invalid 200)."""
        token = make_token(f"fault-{uuid.uuid4().hex}", plan="limited")  # 3 per minute
        upstream.control(faults=faults)
        reply = mint(broker, token)
        assert reply.status_code == status, reply.text
        if code:
            assert reply.json()["error"]["code"] == code
        assert len(upstream.received()) == calls
        if code == "upstream_rate_limited":
            assert reply.headers["retry-after"] == "7"
        upstream.control(faults=[])
        refunded = code not in (None, "upstream_invalid_response")
        expected = [200] * (3 if refunded else 2) + [429]
        assert [mint(broker, token).status_code for _ in range(len(expected))] == expected

    def test_slow_upstream_beyond_the_deadline(
        self, broker: TokenbrokerServer, upstream: FakeUpstream
    ) -> None:
        """An upstream slower than the total deadline: 504 in about the deadline."""
        upstream.control(latency_ms=3000)
        start = time.perf_counter()
        reply = mint(broker, make_token(f"slow-{uuid.uuid4().hex}"))
        took = time.perf_counter() - start
        assert reply.status_code == 504
        assert 0.9 < took < 2.0

    def test_circuit_opens_and_recovers(self, start_broker: StartBroker) -> None:
        """After repeated failures the broker answers at once without calling upstream, then
        a probe finds it healthy again and minting resumes. Its own fake upstream: no other
        test's late request can take one of its faults."""
        private = TokenbrokerServer(["fake-upstream", "--port", "0", "--api-key", API_KEY])
        try:
            self._circuit(start_broker, FakeUpstream(private))
        finally:
            private.stop()

    def _circuit(self, start_broker: StartBroker, upstream: FakeUpstream) -> None:
        own = start_broker(upstream={"timeout": "1s", "retries": 0, "url": upstream.url})
        token = make_token(f"circuit-{uuid.uuid4().hex}")
        upstream.control(faults=["500"] * 5)  # retries: 0, so one attempt per mint
        assert [mint(own, token).status_code for _ in range(5)] == [502] * 5
        reply = mint(own, token)
        assert reply.status_code == 502
        assert "not calling it" in reply.json()["error"]["message"]
        assert len(upstream.received()) == 5
        wait_until(lambda: mint(own, token).status_code == 200)
        assert (
            b'tokenbroker_circuit_state{dependency="upstream"} 0.0'
            in httpx.get(own.url + "/metrics").content
        )


def test_organization_and_project_headers(
    start_broker: StartBroker, upstream: FakeUpstream
) -> None:
    """Configured OpenAI-Organization / OpenAI-Project headers reach the upstream."""
    own = start_broker(upstream={"organization": "org-123", "project": "proj_456"})
    assert mint(own, make_token("org-user")).status_code == 200
    [received] = upstream.received()
    assert (received["organization"], received["project"]) == ("org-123", "proj_456")


@pytest.mark.parametrize("bypassed", [False, True])
def test_proxy_from_the_environment(
    start_broker: StartBroker,
    upstream: FakeUpstream,
    fake_upstream_server: TokenbrokerServer,
    bypassed: bool,
) -> None:
    """http_proxy carries the upstream call (here the "proxy" is the fake upstream itself,
    asked for an unresolvable host); no_proxy exempts a host (the proxy named is dead)."""
    if bypassed:
        env = {"http_proxy": f"http://127.0.0.1:{free_port()}", "no_proxy": "127.0.0.1"}
        own = start_broker(env=env)
    else:
        env = {"http_proxy": fake_upstream_server.url, "no_proxy": ""}
        own = start_broker(env=env, upstream={"url": "http://upstream.invalid/v1"})
    assert mint(own, make_token(f"proxy-user-{bypassed}")).status_code == 200
    assert len(upstream.received()) == 1


def test_sigterm_drains_in_flight_mints(start_broker: StartBroker, upstream: FakeUpstream) -> None:
    """SIGTERM with 50 slow mints in flight: not ready at once, listener closed after the
    delay, all 50 finish with 200, exit code 0."""
    own = start_broker(shutdown={"delay": "1s", "grace": "20s"}, upstream={"timeout": "10s"})
    upstream.control(latency_ms=2500)

    async def fifty() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            tasks = [
                asyncio.ensure_future(
                    client.post(
                        own.url + SESSIONS,
                        json={},
                        headers={"Authorization": f"Bearer {make_token(f'drain-{i}')}"},
                    )
                )
                for i in range(50)
            ]
            arrived = await client.get(upstream.server.url + "/_fake/requests?wait_for=50")
            assert arrived.json()["count"] >= 50
            own.process.proc.send_signal(signal.SIGTERM)
            own.process.wait_for("SIGTERM: not ready")
            ready = await client.get(own.url + "/readyz")
            assert ready.json()["reason"] == "shutting down"
            await asyncio.to_thread(own.process.wait_for, "Shutting down")
            with pytest.raises(httpx.ConnectError):
                await client.get(own.url + "/healthz")
            return [reply.status_code for reply in await asyncio.gather(*tasks)]

    loop = asyncio.new_event_loop()
    try:
        statuses = loop.run_until_complete(fifty())
    finally:
        loop.close()
    assert statuses == [200] * 50
    assert own.process.proc.wait(timeout=20) == 0
    own.process.wait_for("Finished server process")  # the last lines reach the log


def test_mints_cut_off_by_the_end_of_grace_get_503_and_keep_their_allowance(
    start_broker: StartBroker, upstream: FakeUpstream, redis_server: RedisServer, tmp_path: Path
) -> None:
    """SIGTERM while mints wait on a slow upstream past the shutdown grace: each gets a
    clean 503 with Retry-After (not a 500), and its charge goes back: on another replica
    the same users, one mint a minute each, still mint."""
    prefix = f"grace{uuid.uuid4().hex[:6]}"
    policy = tmp_path / "solo.yaml"
    policy.write_text("default_policy: solo\npolicies:\n  solo:\n"
                      "    models: [gpt-4o-mini-realtime-preview]\n"
                      "    limits: [{limit: 3, per: 1m}]\n")  # fmt: skip
    settings = {"redis": {"url": redis_server.url, "prefix": prefix},
                "policies": {"file": str(policy)}}  # fmt: skip
    own = start_broker(shutdown={"delay": "10ms", "grace": "1s"}, upstream={"timeout": "10s"},
                       **settings)  # fmt: skip
    other = start_broker(**settings)
    upstream.control(latency_ms=4000)
    users = [make_token(f"cut-{i}") for i in range(3)]

    async def cut_off() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            tasks = [asyncio.ensure_future(client.post(
                own.url + SESSIONS, json={}, headers={"Authorization": f"Bearer {token}"}))
                for token in users]  # fmt: skip
            arrived = await client.get(upstream.server.url + "/_fake/requests?wait_for=3")
            assert arrived.json()["count"] >= 3
            own.process.proc.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*tasks))

    loop = asyncio.new_event_loop()
    try:
        replies = loop.run_until_complete(cut_off())
    finally:
        loop.close()
    assert [r.status_code for r in replies] == [503] * 3
    assert all(r.headers["retry-after"] == "1" for r in replies)
    assert {r.json()["error"]["code"] for r in replies} == {"shutting_down"}
    assert own.process.proc.wait(timeout=20) == 0
    upstream.control(latency_ms=0)
    for token in users:  # solo: 3 a minute; the cut-off charge came back, so 3 pass
        codes = [mint(other, token).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]


def test_metrics_parse_and_count(start_broker: StartBroker, upstream: FakeUpstream) -> None:
    """/metrics is valid Prometheus text and its counters match the requests sent."""
    own = start_broker()
    upstream.control(faults=["503"])  # the first mint succeeds on its second attempt
    for i in range(4):
        assert mint(own, make_token(f"m-{i}")).status_code == 200
    mint(own, make_token("m-x", plan="suspended"))
    mint(own, "garbage")
    text = httpx.get(own.url + "/metrics").text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert (
        samples[("tokenbroker_mints_total", (("outcome", "minted"), ("policy", "standard")))] == 4
    )
    assert (
        samples[
            ("tokenbroker_mints_total", (("outcome", "policy_disabled"), ("policy", "suspended")))
        ]
        == 1
    )
    assert (
        samples[("tokenbroker_mints_total", (("outcome", "invalid_token"), ("policy", "none")))]
        == 1
    )
    assert samples[("tokenbroker_mint_duration_seconds_count", ())] == 6
    assert samples[("tokenbroker_limiter_decisions_total", (("decision", "allowed"),))] == 4
    assert samples[("tokenbroker_upstream_duration_seconds_count", (("result", "ok"),))] == 4
    assert samples[("tokenbroker_upstream_retries_total", ())] == 1
    assert samples[("tokenbroker_policy_version", ())] >= 1
    assert "m-1" not in text and "user" not in {k for _, labels in samples for k, _ in labels}


class TestAudit:
    async def test_every_mint_is_audited_once(
        self,
        start_broker: StartBroker,
        redis_server: RedisServer,
        upstream: FakeUpstream,
        tmp_path: Path,
    ) -> None:
        """200 concurrent mints give exactly 200 matching entries; `audit tail` reads them."""
        prefix = f"aud{uuid.uuid4().hex[:6]}"
        own = start_broker(redis={"url": redis_server.url, "prefix": prefix})
        ids = [f"audit-{i}-{uuid.uuid4().hex[:6]}" for i in range(200)]
        async with httpx.AsyncClient(timeout=30) as client:
            replies = await asyncio.gather(
                *(
                    client.post(
                        own.url + SESSIONS,
                        json={"voice": "ash"},
                        headers={
                            "Authorization": f"Bearer {make_token(f'aud-{i}')}",
                            "X-Request-ID": ids[i],
                            "User-Agent": "audit-test/1",
                        },
                    )
                    for i in range(200)
                )
            )
        assert all(reply.status_code == 200 for reply in replies)
        store = redis.Redis.from_url(redis_server.url)

        key = f"{prefix}:audit".encode()
        # written in batches, after the replies
        await asyncio.to_thread(wait_until, lambda: store.xlen(key) >= 200)
        rows: Any = store.xrange(key)
        entries = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows]
        mine = [e for e in entries if e["request_id"] in set(ids)]
        assert sorted(e["request_id"] for e in mine) == sorted(ids)
        assert {
            (e["outcome"], e["policy"], e["voice"], e["user_agent"], e["ip"]) for e in mine
        } == {("minted", "standard", "ash", "audit-test/1", "127.0.0.1")}

        config = tmp_path / "ops.yaml"
        config.write_text(
            json.dumps(
                {
                    "redis": {"url": redis_server.url, "prefix": prefix},
                    "auth": {
                        "providers": [
                            {"issuer": "x", "algorithms": ["HS256"], "hs256_secret_env": "UNSET"}
                        ]
                    },
                }
            )
        )
        tail = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "tokenbroker",
                "audit",
                "tail",
                "--user",
                "aud-7",
                "--since",
                "10m",
                "--config",
                str(config),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        [line] = tail.stdout.splitlines()
        assert json.loads(line)["request_id"] == ids[7]
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "tokenbroker", "user", "show", "aud-7", "--config", str(config)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(shown.stdout)["recent_mints"][0]["request_id"] == ids[7]

    def test_redis_restart_loses_no_later_entry(
        self, start_broker: StartBroker, tmp_path: Path, upstream: FakeUpstream
    ) -> None:
        """Entries of mints that succeed after a Redis restart all reach the new stream."""
        store_server = RedisServer(tmp_path)
        store_server.start()
        try:
            own = start_broker(redis={"url": store_server.url}, fail_mode="local")
            for i in range(20):
                assert mint(own, make_token(f"before-{i}")).status_code == 200
            store_server.stop()
            store_server.start()
            after = []
            for i in range(30):
                reply = mint(own, make_token(f"after-{i}"), **{"X-Request-ID": f"after-{i}"})
                if reply.status_code == 200:
                    after.append(f"after-{i}")
            assert len(after) == 30  # fail_mode local keeps minting while Redis comes back
            store = redis.Redis.from_url(store_server.url)

            def landed() -> set[str]:
                rows: list[Any] = []
                for key in store.scan_iter("*:audit"):
                    rows += store.xrange(key)  # type: ignore[arg-type]
                return {fields[b"request_id"].decode() for _, fields in rows}

            wait_until(lambda: set(after) <= landed())
        finally:
            store_server.stop()
