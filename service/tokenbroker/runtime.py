"""Wiring only: open the shared clients, build the Broker, run background tasks, close.

``redis_runtime`` is production (Redis store, real upstream); ``memory_runtime`` is
``tokenbroker dev`` (in-process store and limiter, fake upstream over an in-process
transport: no Redis, no key, no network).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from .auth import Authenticator
from .failover import FailModeLimiter
from .fake_upstream import FakeControls, create_fake_upstream
from .limiter import MemoryLimiter, RedisLimiter
from .mint import Broker
from .operations import Operations
from .policy_store import STORE_ERRORS, MemoryPolicyStore, PolicyCache, RedisPolicyStore
from .redis_clients import connect, connect_listener
from .settings import Settings
from .upstream import Upstream, make_client

log = logging.getLogger("tokenbroker")


@dataclass
class Runtime:
    broker: Broker
    settings: Settings
    operations: Operations
    store_ping: Callable[[], Awaitable[bool]] | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def ready(self) -> tuple[bool, str]:
        """Whether this replica can mint now, and why not."""
        if self.broker.policies.policies is None:
            return False, "policies not loaded"
        closed = self.settings.fail_mode == "closed"
        if closed and self.store_ping is not None and not await self.store_ping():
            return False, "rate-limit store unreachable"
        return True, "ok"


def _initial_policies(settings: Settings) -> str | None:
    return settings.policies_file.read_text() if settings.policies_file else None


@contextlib.asynccontextmanager
async def redis_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    client = connect(settings)
    http = make_client(
        settings.upstream_url,
        connect_timeout=settings.upstream_connect_timeout,
        timeout=settings.upstream_timeout,
    )
    listener = connect_listener(settings)
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
    broker = Broker(
        Authenticator(settings, http),
        cache,
        FailModeLimiter(limiter, settings.fail_mode),
        Upstream(http, settings.upstream_api_key),
    )
    runtime = Runtime(broker, settings, Operations(store, limiter), ping)
    runtime.tasks.append(asyncio.create_task(cache.run(initial)))
    try:
        yield runtime
    finally:
        for task in runtime.tasks:
            task.cancel()
        await asyncio.gather(*runtime.tasks, return_exceptions=True)
        await http.aclose()
        await client.aclose()
        await listener.aclose()


DEV_API_KEY = "sk-dev-fake-upstream"  # the fake upstream's key, not a secret


@contextlib.asynccontextmanager
async def memory_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    fake = create_fake_upstream(FakeControls(api_key=DEV_API_KEY, record=False))
    transport = httpx.ASGITransport(app=fake)
    http = make_client(
        "http://fake-upstream/v1",
        connect_timeout=settings.upstream_connect_timeout,
        timeout=settings.upstream_timeout,
        transport=transport,
    )
    store = MemoryPolicyStore()
    cache = PolicyCache(store, settings.policy_refresh_interval)
    await cache.bootstrap(_initial_policies(settings))
    limiter = MemoryLimiter()
    broker = Broker(Authenticator(settings), cache, limiter, Upstream(http, DEV_API_KEY))
    runtime = Runtime(broker, settings, Operations(store, limiter))
    runtime.tasks.append(asyncio.create_task(cache.listen()))
    try:
        yield runtime
    finally:
        for task in runtime.tasks:
            task.cancel()
        await asyncio.gather(*runtime.tasks, return_exceptions=True)
        await http.aclose()
