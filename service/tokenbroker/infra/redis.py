"""Redis connections from settings: single node or Cluster, plain or TLS (``rediss://``)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, ClassVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, parse_url
from redis.connection import HiredisRespSerializer

from tokenbroker.config.settings import Settings
from tokenbroker.infra.breaker import CircuitBreaker

# What a store call can raise when Redis is down, slow or gone: callers apply their fail mode.
STORE_ERRORS = (aioredis.RedisError, OSError, TimeoutError)


class _HiredisPacking:
    """Commands packed by hiredis, as redis-py's synchronous connections already do.

    redis-py's asyncio connections pack every argument in Python; with the audit
    entries' XADDs and the limiter's EVALSHAs that was ~30 µs of CPU per command on the
    mint path. The serializer is redis-py's own (``HiredisRespSerializer``): same
    bytes on the wire, same errors for arguments Redis cannot take.
    """

    _serializer: ClassVar[HiredisRespSerializer] = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        packed: list[bytes] = self._serializer.pack(*args)
        return packed


class _Breaking:
    """Every command of a client behind one circuit breaker: whatever path asks (a charge,
    the call registry, the usage ledger, policies), a Redis that keeps failing is not asked
    again until the breaker lets a probe through, and each caller fails at once with a
    store error instead of waiting out the socket timeout. Each client gets its own
    subclass holding its breaker (:func:`connect`)."""

    breaker: ClassVar[CircuitBreaker]
    _sending = False  # a command of the connection's own (connect's handshake) inside a send

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._sending:  # part of the command being sent: the breaker let it through
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        if not self.breaker.allow():
            raise redis.exceptions.ConnectionError("Redis circuit open")
        self._sending = True
        try:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
        except BaseException:
            self.breaker.failure()
            raise
        finally:
            self._sending = False

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            reply = await super().read_response(*args, **kwargs)  # type: ignore[misc]
        except redis.exceptions.ResponseError:
            self.breaker.success()  # Redis answered, with an error reply
            raise
        except asyncio.CancelledError:  # says nothing of Redis, but a probe must not stay one
            if self.breaker.state != "closed":
                self.breaker.failure()
            raise
        except Exception:
            self.breaker.failure()
            raise
        self.breaker.success()
        return reply


class HiredisConnection(_HiredisPacking, Connection):
    pass


class SharedContextSSLConnection(_HiredisPacking, SSLConnection):
    """An SSL connection whose SSLContext is built once per process, not per connection.

    redis-py builds a fresh context for every connection; ``ssl.create_default_context()``
    loads the system CA store (~40 ms of CPU here), so a burst that opens a few dozen
    connections spends seconds in handshake set-up and times out. The context is
    immutable once built, so sharing it is safe.
    """

    _shared: ClassVar[dict[tuple[Any, ...], ssl.SSLContext]] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        spec = self.ssl_context
        key = (spec.ca_certs, spec.certfile, spec.keyfile, spec.cert_reqs, spec.check_hostname)
        if key not in self._shared:
            self._shared[key] = spec.get()
        spec.context = self._shared[key]


def _tls(settings: Settings) -> dict[str, Any]:
    options = {"ssl_ca_certs": settings.redis.ca_file, "ssl_certfile": settings.redis.cert_file,
               "ssl_keyfile": settings.redis.key_file}  # fmt: skip
    return {k: str(v) for k, v in options.items() if v is not None}


def connect(settings: Settings, breaker: CircuitBreaker | None = None) -> Any:
    """The shared client: bounded timeouts, ``breaker`` in front of every command (a dead
    or frozen Redis costs nothing after a few failures; single node only, a Cluster
    client keeps its own per-node connections) and a bounded pool. The pool does not make callers
    wait for a free connection: redis-py's blocking pool costs ~130 µs per command here,
    more than the script itself; a connection is held only for one round trip, so the
    bound is reached only by thousands of simultaneous charges."""
    options: dict[str, Any] = {
        "socket_timeout": settings.redis.timeout,
        "socket_connect_timeout": settings.redis.timeout,
        **_tls(settings),
    }
    if settings.redis.cluster:
        # The cluster client fails (rather than waits) past max_connections per node, so
        # it keeps its own unbounded default; max_connections bounds single-node pools.
        return RedisCluster.from_url(settings.redis.url, **options)
    url_options = parse_url(settings.redis.url)
    if url_options.get("connection_class") is SSLConnection:
        url_options["connection_class"] = SharedContextSSLConnection
    elif url_options.get("connection_class", Connection) is Connection:
        url_options["connection_class"] = HiredisConnection
    if breaker is not None:
        base = url_options["connection_class"]
        url_options["connection_class"] = type(
            f"Breaking{base.__name__}", (_Breaking, base), {"breaker": breaker}
        )
    pool = aioredis.ConnectionPool(
        max_connections=settings.redis.max_connections, **{**options, **url_options}
    )
    return aioredis.Redis.from_pool(pool)  # aclose() closes the pool too


def connect_listener(settings: Settings) -> aioredis.Redis:
    """A client for pub/sub: blocking reads, so no socket timeout. In a cluster any node
    hears every PUBLISH, so a plain connection to the configured node is enough."""
    return aioredis.Redis.from_url(
        settings.redis.url,
        socket_connect_timeout=settings.redis.timeout,
        health_check_interval=30,
        **_tls(settings),
    )
