"""Wiring only: open the shared clients, build the Broker, run background tasks, close.

``redis_runtime`` is production (Redis store, real upstream); ``memory_runtime`` is
``tokenbroker dev`` (in-process store, limiter and audit, the fake upstream served on a
loopback port by a thread of this process: no Redis, no key, no network).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import httpx

from tokenbroker.auth.authenticator import Authenticator
from tokenbroker.auth.jwks import make_jwks_client
from tokenbroker.config.settings import Settings
from tokenbroker.families import vocabulary as family_vocabulary
from tokenbroker.families.live.flow import LiveSessions, safety_key
from tokenbroker.families.live.sideband import LiveSideband
from tokenbroker.families.live.upstream import LiveUpstream
from tokenbroker.families.live.watch import watch_session
from tokenbroker.families.realtime.calls import CallFlow
from tokenbroker.families.realtime.dialects import DIALECTS
from tokenbroker.families.realtime.mint import RealtimeMint
from tokenbroker.families.realtime.upstream import CallsUpstream
from tokenbroker.families.realtime.watch import watch_call
from tokenbroker.flow.lifecycle import ModelLifecycle
from tokenbroker.flow.mint import Broker
from tokenbroker.flow.operations import Operations
from tokenbroker.flow.runtime import MintFlow, Runtime, SessionFamily
from tokenbroker.flow.watched import LiveCalls
from tokenbroker.infra.audit import AuditTrail, RedisAudit
from tokenbroker.infra.breaker import CircuitBreaker
from tokenbroker.infra.metrics import Metrics
from tokenbroker.infra.redis import STORE_ERRORS, connect, connect_listener
from tokenbroker.limits.failover import FailModeLimiter
from tokenbroker.limits.ledger import Ledger, UsageLedger
from tokenbroker.limits.memory import MemoryLimiter
from tokenbroker.limits.redis import RedisLimiter
from tokenbroker.policy.cache import PolicyCache
from tokenbroker.policy.store import RedisPolicyStore
from tokenbroker.registry.notices import RedisNotices, SpentNotices
from tokenbroker.registry.registry import CallRegistry, Registry
from tokenbroker.upstream.client import Connection, Upstream, UpstreamPolicy
from tokenbroker.upstream.entra import EntraToken, default_credential
from tokenbroker.upstream.models import list_models

log = logging.getLogger("tokenbroker")


def replica_name() -> str:
    """This process among the replicas: its host (the pod's name) and a random suffix."""
    return f"{socket.gethostname()}-{os.urandom(3).hex()}"


def initial_policies(settings: Settings) -> str | None:
    return settings.policies.file.read_text() if settings.policies.file else None


@contextlib.asynccontextmanager
async def open_upstream(
    settings: Settings, metrics: Metrics, url: str, key: str | None, proxy: str | None = None
) -> AsyncIterator[Upstream]:
    connection = Connection(
        settings.upstream.connect_timeout, settings.upstream.max_connections, proxy
    )
    policy = UpstreamPolicy(deadline=settings.upstream.timeout, retries=settings.upstream.retries)
    entra = settings.upstream.dialect == "azure" and settings.upstream.azure_auth == "entra_id"
    upstream = Upstream(
        connection,
        url,
        key,
        policy,
        settings.upstream.headers,
        metrics.upstream_retries.inc,
        key_header=DIALECTS[settings.upstream.dialect].key_header,
        token=EntraToken(default_credential()) if entra else None,
    )
    try:
        yield upstream
    finally:
        await upstream.close()


def model_lifecycle(
    settings: Settings, metrics: Metrics, upstream: Upstream, cache: PolicyCache
) -> ModelLifecycle:
    """The shutdown dates of the policies' models, read from the upstream's model list."""
    return ModelLifecycle(partial(list_models, upstream), cache, metrics,
                          settings.upstream.models_check_interval)  # fmt: skip


def build_broker(
    settings: Settings,
    metrics: Metrics,
    jwks_http: httpx.AsyncClient,
    cache: PolicyCache,
    limiter: FailModeLimiter | MemoryLimiter,
    upstream: Upstream,
) -> Broker:
    authenticator = Authenticator(settings.auth, jwks_http, on_jwks_fetch=metrics.jwks_fetches)
    metrics.watch_circuit("upstream", lambda: upstream.breaker.state)
    metrics.policy_version.set_function(lambda: cache.version)
    return Broker(authenticator, cache, limiter, upstream, metrics)


@contextlib.asynccontextmanager
async def live_runtime(
    settings: Settings,
    metrics: Metrics,
    broker: Broker,
    registry: CallRegistry,
    ledger: UsageLedger,
    operations: Callable[..., Operations],
    audit: AuditTrail,
    ping: Callable[[], Awaitable[bool]] | None = None,
    notices: SpentNotices | None = None,
) -> AsyncIterator[Runtime]:
    """The runtime with live calls on ``registry`` and ``ledger`` (Redis, or in process
    for dev mode); ``operations`` makes the operator actions given the live-call parts.
    Closes the sidebands' connection pool after the runtime has stopped."""
    broker.ledger = ledger
    calls_up = CallsUpstream(broker.upstream)
    live = LiveCalls(replica_name(), registry, ledger, broker.policies, settings.calls, metrics,
                     audit, notices)  # fmt: skip
    ops = operations(registry=registry, ledger=ledger, end_call=live.end)
    # the Realtime API: client secrets on two paths, calls watched through their sidebands
    realtime = RealtimeMint(broker, DIALECTS[settings.upstream.dialect])
    mints: dict[str, MintFlow] = {"/v1/realtime/sessions": realtime.mint,
             "/v1/realtime/client_secrets": realtime.mint_client_secret}  # fmt: skip
    live.add_family("realtime", partial(watch_call, upstream=calls_up), calls_up.hangup)
    # GPT-Live: sessions created as the trusted backend, watched through their sidebands
    sideband = LiveSideband(broker.upstream)
    families: dict[str, SessionFamily] = {}
    if settings.upstream.dialect != "openai-beta":  # the beta API has no GPT-Live
        key = safety_key(settings.live.safety_secret, settings.upstream.api_key)
        prices = {model: price.model_dump() for model, price in settings.live.prices.items()}
        live.add_family("live", partial(watch_session, sideband=sideband, prices=prices),
                        sideband.end)  # fmt: skip
        families["live"] = LiveSessions(broker, live, LiveUpstream(broker.upstream), sideband,
                                        settings.live.mcp_secrets, key)  # fmt: skip
    try:
        yield Runtime(broker, settings, ops, audit, ping, mints=mints,
                      calls=CallFlow(broker, live, calls_up), live=live,
                      families=families)  # fmt: skip
    finally:
        await calls_up.close()
        await sideband.close()


@contextlib.asynccontextmanager
async def redis_runtime(settings: Settings, metrics: Metrics) -> AsyncIterator[Runtime]:
    store_breaker = CircuitBreaker()
    client = connect(settings, store_breaker)
    listener = connect_listener(settings)
    up_cfg = settings.upstream
    try:
        store = RedisPolicyStore(client, settings.redis.prefix, listener)
        vocabulary = family_vocabulary(settings.upstream.dialect)
        cache = PolicyCache(store, settings.policies.refresh_interval, vocabulary)
        initial = initial_policies(settings)
        with contextlib.suppress(*STORE_ERRORS):
            await cache.bootstrap(initial)

        async def ping() -> bool:
            try:
                return bool(await client.ping())
            except STORE_ERRORS:
                return False

        limiter = RedisLimiter(
            client,
            settings.redis.prefix,
            cluster=settings.redis.cluster,
            patience=settings.redis.timeout / 2,  # the reply has the other half to arrive
        )
        guarded = FailModeLimiter(limiter, settings.fail_mode, metrics=metrics)
        metrics.watch_circuit("redis", lambda: store_breaker.state)
        audit = RedisAudit(
            client,
            f"{settings.redis.prefix}:audit",
            settings.audit.max_entries,
            flush_interval=settings.audit.flush_interval,
            on_fate=lambda fate, n: metrics.audit.labels(fate).inc(n),
        )
        async with (
            open_upstream(settings, metrics, up_cfg.url, up_cfg.api_key, up_cfg.proxy) as up,
            make_jwks_client() as jwks_http,
        ):
            broker = build_broker(settings, metrics, jwks_http, cache, guarded, up)
            async with live_runtime(
                settings, metrics, broker, Registry(client, settings.redis.prefix),
                Ledger(client, settings.redis.prefix),
                partial(Operations, store, limiter, audit, vocabulary), audit, ping,
                RedisNotices(client, listener, settings.redis.prefix),
            ) as runtime:  # fmt: skip
                assert runtime.live is not None
                runtime.start(cache.run(initial), audit.run(), runtime.live.run(),
                              model_lifecycle(settings, metrics, up, cache).run())  # fmt: skip
                try:
                    yield runtime
                finally:
                    await runtime.stop()
    finally:
        await client.aclose()
        await listener.aclose()
