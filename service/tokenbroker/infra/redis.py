"""Redis connections from settings: single node or Cluster, plain or TLS (``rediss://``)."""

from __future__ import annotations

import ssl
from typing import Any, ClassVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, parse_url
from redis.connection import HiredisRespSerializer

from tokenbroker.config.settings import Settings

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


def connect(settings: Settings) -> Any:
    """The shared client: bounded timeouts (the circuit breaker makes a dead Redis cost
    nothing after a few failures) and a bounded pool. The pool does not make callers
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
