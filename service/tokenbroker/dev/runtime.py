"""``tokenbroker dev``: the broker on an in-process store, limiter, audit, call registry and
usage ledger, and the fake upstream (a real WebRTC peer when aiortc is installed) served
on a loopback port by a thread of this process (no Redis, key or network)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial

from tokenbroker.auth.jwks import make_jwks_client
from tokenbroker.config.settings import Settings
from tokenbroker.fake_upstream.app import FakeControls, create_fake_upstream
from tokenbroker.families import vocabulary as family_vocabulary
from tokenbroker.flow.operations import Operations
from tokenbroker.flow.runtime import Runtime
from tokenbroker.infra.audit import MemoryAudit
from tokenbroker.infra.metrics import Metrics
from tokenbroker.limits.ledger import MemoryLedger
from tokenbroker.limits.memory import MemoryLimiter
from tokenbroker.policy.cache import PolicyCache
from tokenbroker.policy.store import MemoryPolicyStore
from tokenbroker.registry.memory import MemoryRegistry
from tokenbroker.server import serve_in_thread
from tokenbroker.wiring import (
    build_broker,
    initial_policies,
    live_runtime,
    model_lifecycle,
    open_upstream,
)

DEV_API_KEY = "sk-dev-fake-upstream"  # the fake upstream's key, not a secret


@contextlib.asynccontextmanager
async def memory_runtime(settings: Settings, metrics: Metrics) -> AsyncIterator[Runtime]:
    fake = create_fake_upstream(FakeControls(api_key=DEV_API_KEY, record=False))
    store = MemoryPolicyStore()
    vocabulary = family_vocabulary(settings.upstream.dialect)
    cache = PolicyCache(store, settings.policies.refresh_interval, vocabulary)
    await cache.bootstrap(initial_policies(settings))
    limiter = MemoryLimiter()
    audit = MemoryAudit()
    async with (
        serve_in_thread(fake) as fake_url,
        open_upstream(settings, metrics, f"{fake_url}/v1", DEV_API_KEY) as upstream,
        make_jwks_client() as jwks_http,
    ):
        broker = build_broker(settings, metrics, jwks_http, cache, limiter, upstream)
        async with live_runtime(
            settings, metrics, broker, MemoryRegistry(), MemoryLedger(),
            partial(Operations, store, limiter, audit, vocabulary), audit,
        ) as runtime:  # fmt: skip
            assert runtime.live is not None
            runtime.start(cache.listen(), runtime.live.run(),
                          model_lifecycle(settings, metrics, upstream, cache).run())  # fmt: skip
            try:
                yield runtime
            finally:
                await runtime.stop()
