"""Wiring only: open the shared clients, build the Broker, run background tasks, close.

``redis_runtime`` is production (Redis store, real upstream); ``memory_runtime`` is
``tokenbroker dev`` (in-process store, limiter and audit, the fake upstream served on a
loopback port by a thread of this process: no Redis, no key, no network).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from .audit import AuditTrail, MemoryAudit, RedisAudit
from .auth import Authenticator
from .failover import FailModeLimiter
from .fake_upstream import FakeControls, create_fake_upstream
from .jwks import make_jwks_client
from .limiter import MemoryLimiter, RedisLimiter
from .metrics import Metrics
from .mint import Broker
from .operations import Operations
from .policy_store import STORE_ERRORS, MemoryPolicyStore, PolicyCache, RedisPolicyStore
from .redis_clients import connect, connect_listener
from .server import serve_in_thread
from .settings import Settings
from .upstream import Upstream, UpstreamPolicy, make_session

log = logging.getLogger("tokenbroker")


@dataclass
class Runtime:
    broker: Broker
    settings: Settings
    operations: Operations
    store_ping: Callable[[], Awaitable[bool]] | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    draining: bool = False

    async def ready(self) -> tuple[bool, str]:
        """Whether this replica can mint now, and why not."""
        if self.draining:
            return False, "shutting down"
        if self.broker.policies.policies is None:
            return False, "policies not loaded"
        closed = self.settings.fail_mode == "closed"
        if closed and self.store_ping is not None and not await self.store_ping():
            return False, "rate-limit store unreachable"
        return True, "ok"

    def start(self, *jobs: Awaitable[None]) -> None:
        self.tasks += [asyncio.ensure_future(job) for job in jobs]

    async def stop(self) -> None:
        """Flush the audit trail, then stop background tasks."""
        await self.broker.audit.flush(5.0)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _initial_policies(settings: Settings) -> str | None:
    return settings.policies_file.read_text() if settings.policies_file else None


@contextlib.asynccontextmanager
async def _upstream(
    settings: Settings, metrics: Metrics, url: str, key: str | None
) -> AsyncIterator[Upstream]:
    session = make_session(
        connect_timeout=settings.upstream_connect_timeout,
        timeout=settings.upstream_timeout,
        max_connections=settings.upstream_max_connections,
    )
    policy = UpstreamPolicy(deadline=settings.upstream_timeout, retries=settings.upstream_retries)
    try:
        yield Upstream(
            session, url, key, policy, settings.upstream_headers, metrics.upstream_retries.inc
        )
    finally:
        await session.close()


def _broker(
    settings: Settings,
    metrics: Metrics,
    jwks_http: httpx.AsyncClient,
    cache: PolicyCache,
    limiter: FailModeLimiter | MemoryLimiter,
    upstream: Upstream,
    audit: AuditTrail,
) -> Broker:
    authenticator = Authenticator(settings, jwks_http, on_jwks_fetch=metrics.jwks_fetches)
    metrics.watch_circuit("upstream", lambda: upstream.breaker.state)
    metrics.policy_version.set_function(lambda: cache.version)
    return Broker(authenticator, cache, limiter, upstream, audit, metrics)


@contextlib.asynccontextmanager
async def redis_runtime(settings: Settings, metrics: Metrics) -> AsyncIterator[Runtime]:
    client = connect(settings)
    listener = connect_listener(settings)
    try:
        store = RedisPolicyStore(client, settings.redis_prefix, listener)
        cache = PolicyCache(store, settings.policy_refresh_interval)
        initial = _initial_policies(settings)
        with contextlib.suppress(*STORE_ERRORS):
            await cache.bootstrap(initial)

        async def ping() -> bool:
            try:
                return bool(await client.ping())
            except STORE_ERRORS:
                return False

        limiter = RedisLimiter(client, settings.redis_prefix, cluster=settings.redis_cluster)
        guarded = FailModeLimiter(limiter, settings.fail_mode, metrics=metrics)
        metrics.watch_circuit("redis", lambda: guarded.breaker.state)
        audit = RedisAudit(
            client,
            f"{settings.redis_prefix}:audit",
            settings.audit_max_entries,
            flush_interval=settings.audit_flush_interval,
            on_fate=lambda fate, n: metrics.audit.labels(fate).inc(n),
        )
        async with (
            _upstream(settings, metrics, settings.upstream_url, settings.upstream_api_key) as up,
            make_jwks_client() as jwks_http,
        ):
            broker = _broker(settings, metrics, jwks_http, cache, guarded, up, audit)
            runtime = Runtime(broker, settings, Operations(store, limiter, audit), ping)
            runtime.start(cache.run(initial), audit.run())
            try:
                yield runtime
            finally:
                await runtime.stop()
    finally:
        await client.aclose()
        await listener.aclose()


DEV_API_KEY = "sk-dev-fake-upstream"  # the fake upstream's key, not a secret


@contextlib.asynccontextmanager
async def memory_runtime(settings: Settings, metrics: Metrics) -> AsyncIterator[Runtime]:
    fake = create_fake_upstream(FakeControls(api_key=DEV_API_KEY, record=False))
    store = MemoryPolicyStore()
    cache = PolicyCache(store, settings.policy_refresh_interval)
    await cache.bootstrap(_initial_policies(settings))
    limiter = MemoryLimiter()
    audit = MemoryAudit()
    async with (
        serve_in_thread(fake) as fake_url,
        _upstream(settings, metrics, f"{fake_url}/v1", DEV_API_KEY) as upstream,
        make_jwks_client() as jwks_http,
    ):
        broker = _broker(settings, metrics, jwks_http, cache, limiter, upstream, audit)
        runtime = Runtime(broker, settings, Operations(store, limiter, audit))
        runtime.start(cache.listen())
        try:
            yield runtime
        finally:
            await runtime.stop()
