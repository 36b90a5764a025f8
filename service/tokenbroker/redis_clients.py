"""Redis connections from settings: single node or Cluster, plain or TLS (``rediss://``)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from .settings import Settings


def _tls(settings: Settings) -> dict[str, Any]:
    options = {"ssl_ca_certs": settings.redis_ca_file, "ssl_certfile": settings.redis_cert_file,
               "ssl_keyfile": settings.redis_key_file}  # fmt: skip
    return {k: str(v) for k, v in options.items() if v is not None}


def connect(settings: Settings) -> Any:
    """The shared client: short timeouts, so a dead Redis costs milliseconds, not seconds."""
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        **_tls(settings),
    }
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **options)
    return aioredis.Redis.from_url(settings.redis_url, max_connections=512, **options)


def connect_listener(settings: Settings) -> aioredis.Redis:
    """A client for pub/sub: blocking reads, so no socket timeout. In a cluster any node
    hears every PUBLISH, so a plain connection to the configured node is enough."""
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=30,
        **_tls(settings),
    )
