"""Limits across broker processes: exact under concurrency on single Redis, Cluster and TLS,
refunds, and every fail mode when Redis dies."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
import redis.cluster
from prometheus_client.parser import text_string_to_metric_families

from conftest import POLICIES, FakeUpstream, StartBroker, make_token
from servers import RedisCluster, RedisServer, TokenbrokerServer, make_tls_files, wait_until
from tcp_delay import DelayProxy

LIMITS = POLICIES / "limits.yaml"


async def burst(brokers: list[TokenbrokerServer], tokens: list[str]) -> list[int]:
    """All requests at once, spread round-robin over the brokers; their statuses."""
    limits = httpx.Limits(max_connections=len(tokens))
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        replies = await asyncio.gather(*(
            client.post(brokers[i % len(brokers)].url + "/v1/realtime/sessions", json={},
                        headers={"Authorization": f"Bearer {token}"})
            for i, token in enumerate(tokens)
        ))  # fmt: skip
    return [reply.status_code for reply in replies]


def fleet(start_broker: StartBroker, redis_settings: dict[str, Any], n: int = 3) -> tuple[
    list[TokenbrokerServer], str]:  # fmt: skip
    prefix = f"x{uuid.uuid4().hex[:8]}"
    brokers = [start_broker(policy_file=LIMITS, redis={**redis_settings, "prefix": prefix})
               for _ in range(n)]  # fmt: skip
    return brokers, prefix


def stop_before_their_redis(brokers: list[TokenbrokerServer]) -> None:
    """Brokers stop while their Redis is up: the last audit batch lands, no 5 s flush wait."""
    for broker in brokers:
        broker.stop()


async def assert_exact(brokers: list[TokenbrokerServer], client: Any, prefix: str) -> None:
    """200 concurrent mints: exactly the global budget, then exactly the user's limit, and a
    user-window denial charges nothing on the global budget."""
    statuses = await burst(brokers, [make_token(f"u-{uuid.uuid4().hex}") for _ in range(200)])
    assert sorted(set(statuses)) == [200, 429]
    assert statuses.count(200) == 5

    client.delete(f"{prefix}:rl:{{global}}")
    solo = make_token(f"solo-{uuid.uuid4().hex}", plan="solo")
    statuses = await burst(brokers, [solo] * 200)
    assert statuses.count(200) == 3
    assert statuses.count(429) == 197
    # the 197 denials did not touch the global budget: 5 - 3 = 2 remain
    others = await burst(brokers, [make_token(f"o-{uuid.uuid4().hex}") for _ in range(10)])
    assert others.count(200) == 2


class TestExactness:
    async def test_single_redis(
        self, start_broker: StartBroker, redis_server: RedisServer, upstream: FakeUpstream
    ) -> None:
        """Three brokers, one Redis: the limits hold exactly."""
        brokers, prefix = fleet(start_broker, {"url": redis_server.url})
        await assert_exact(brokers, redis.Redis.from_url(redis_server.url), prefix)
        keys = list(redis.Redis.from_url(redis_server.url).scan_iter(f"{prefix}:*"))
        # policy versions are configuration and the audit stream is capped by length
        keys = [key for key in keys if b"{policy}" not in key and not key.endswith(b":audit")]
        assert keys
        for key in keys:
            assert redis.Redis.from_url(redis_server.url).pttl(key) > 0

    async def test_redis_cluster(
        self, start_broker: StartBroker, tmp_path_factory: pytest.TempPathFactory,
        upstream: FakeUpstream,
    ) -> None:  # fmt: skip
        """The same on a three-node Redis Cluster started by the test."""
        cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
        cluster.start()
        brokers: list[TokenbrokerServer] = []
        try:
            brokers, prefix = fleet(start_broker, {"url": cluster.url, "cluster": True})
            client = redis.cluster.RedisCluster.from_url(cluster.url)
            await assert_exact(brokers, client, prefix)
            client.close()
        finally:
            stop_before_their_redis(brokers)
            cluster.stop()

    async def test_redis_over_tls(
        self, start_broker: StartBroker, tmp_path_factory: pytest.TempPathFactory,
        upstream: FakeUpstream,
    ) -> None:  # fmt: skip
        """The same against a TLS-only Redis (rediss://, verified with a CA file)."""
        directory = tmp_path_factory.mktemp("tls")
        files = make_tls_files(directory)
        server = RedisServer(directory, ["--tls-cert-file", str(files["cert"]),
                                         "--tls-key-file", str(files["key"]),
                                         "--tls-ca-cert-file", str(files["ca"]),
                                         "--tls-auth-clients", "no"], tls=True)  # fmt: skip
        server.start()
        brokers: list[TokenbrokerServer] = []
        try:
            brokers, prefix = fleet(start_broker,
                                    {"url": server.url, "ca_file": str(files["ca"])})  # fmt: skip
            client = redis.Redis.from_url(server.url, ssl_ca_certs=str(files["ca"]))
            await assert_exact(brokers, client, prefix)
        finally:
            stop_before_their_redis(brokers)
            server.stop()


def test_refund_after_upstream_timeout(
    start_broker: StartBroker, redis_server: RedisServer, upstream: FakeUpstream
) -> None:
    """A mint that times out upstream (504) gives its charge back."""
    broker = start_broker(policy_file=LIMITS, upstream={"timeout": "300ms"},
                          redis={"url": redis_server.url})  # fmt: skip
    token = make_token(f"pair-{uuid.uuid4().hex}", plan="pair")
    upstream.control(faults=["hang", "hang"])
    url = broker.url + "/v1/realtime/sessions"
    headers = {"Authorization": f"Bearer {token}"}
    assert [httpx.post(url, json={}, headers=headers).status_code for _ in range(2)] == [504, 504]
    assert [httpx.post(url, json={}, headers=headers).status_code for _ in range(3)] == [
        200, 200, 429]  # fmt: skip


@pytest.fixture
def dying_redis(tmp_path: Any) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    reply = call()
    return reply, time.perf_counter() - start


def test_a_charge_that_reaches_redis_too_late_costs_nothing(
    start_broker: StartBroker, redis_server: RedisServer, upstream: FakeUpstream
) -> None:
    """The charge reaches Redis after the broker gave up (a slow path to Redis): the user
    got 503, and Redis, running the charge past its deadline, charges nothing, so the user
    keeps the allowance (pair: 2 an hour)."""
    proxy = DelayProxy(redis_server.port)
    try:
        broker = start_broker(policy_file=LIMITS, redis={
            "url": f"redis://127.0.0.1:{proxy.port}/0", "timeout": "400ms"})  # fmt: skip
        token = make_token(f"late-{uuid.uuid4().hex}", plan="pair")
        url, headers = broker.url + "/v1/realtime/sessions", {"Authorization": f"Bearer {token}"}
        assert httpx.post(url, json={}, headers=headers).status_code == 200
        proxy.delay, proxy.only = 1.0, b"EVALSHA"  # the charge, not the other traffic
        reply = httpx.post(url, json={}, headers=headers, timeout=10)
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "store_unavailable"
        assert proxy.late.wait(5)  # the late charge has reached Redis now
        proxy.delay = 0.0
        codes: list[int] = []

        def answered() -> bool:
            codes.append(httpx.post(url, json={}, headers=headers).status_code)
            return codes[-1] != 503

        wait_until(answered, 10, pause=0.2)
        assert codes[-1] == 200  # the second of two: the late charge took nothing
        assert httpx.post(url, json={}, headers=headers).status_code == 429
    finally:
        proxy.stop()


def decisions(broker: TokenbrokerServer) -> dict[str, float]:
    text = httpx.get(broker.url + "/metrics").text
    return {
        sample.labels["decision"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tokenbroker_limiter_decisions_total"
    }


@pytest.mark.parametrize(
    ("mode", "while_down", "counted"),
    [
        ("closed", [503, 503, 503], {"allowed": 1}),
        ("open", [200, 200, 200], {"allowed": 1, "unlimited": 3}),
        ("local", [200, 200, 429], {"allowed": 1, "local": 2, "denied": 1}),
    ],
)
def test_redis_down_then_back(
    start_broker: StartBroker,
    dying_redis: RedisServer,
    upstream: FakeUpstream,
    mode: str,
    while_down: list[int],
    counted: dict[str, float],
) -> None:
    """Redis killed: quick replies in the configured mode, each limiter decision counted
    once, health still answers; when Redis returns (empty, so scripts must be reloaded)
    limits apply again by themselves."""
    broker = start_broker(policy_file=LIMITS, fail_mode=mode, redis={"url": dying_redis.url})
    token = make_token(f"pair-{uuid.uuid4().hex}", plan="pair")
    url, headers = broker.url + "/v1/realtime/sessions", {"Authorization": f"Bearer {token}"}

    def mint() -> httpx.Response:
        return httpx.post(url, json={}, headers=headers, timeout=10)

    assert mint().status_code == 200
    dying_redis.stop()
    replies = [timed(mint) for _ in range(3)]
    print(f"\n{mode}: replies while Redis is down took "
          f"{', '.join(f'{t * 1000:.0f} ms' for _, t in replies)}")  # fmt: skip
    assert [r.status_code for r, _ in replies] == while_down
    assert max(t for _, t in replies) < 1.0
    if mode == "closed":
        assert replies[0][0].json()["error"]["code"] == "store_unavailable"
    assert decisions(broker) == counted
    assert httpx.get(broker.url + "/healthz").status_code == 200

    dying_redis.start()
    store = redis.Redis.from_url(dying_redis.url)

    # Redis restarted empty, so the first charge that reaches it creates a bucket; the
    # breaker lets a probe through within about a second.
    def probed() -> bool:
        mint()
        return any(not key.endswith(b":audit") for key in store.scan_iter())

    wait_until(probed, 10, pause=0.05)
    # back on Redis (restarted empty, so the script was reloaded): the probe took one of 2
    assert [mint().status_code for _ in range(2)] == [200, 429]
