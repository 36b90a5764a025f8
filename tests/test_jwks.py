"""JWKS caching against a real JWKS server on loopback, with an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from jwks_server import JwksServer, SigningKey, new_key
from tokenbroker.auth.jwks import JwksCache, JwksUnavailable, make_jwks_client
from tokenbroker.config.settings import JwksSettings

SETTINGS = JwksSettings(
    cache_ttl=600.0, min_ttl=60.0, max_ttl=3600.0, refetch_cooldown=30.0, max_stale=7200.0
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server() -> Iterator[JwksServer]:
    jwks = JwksServer()
    yield jwks
    jwks.stop()


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {"a": new_key("key-a"), "b": new_key("key-b"), "ec": new_key("key-ec", "ES256")}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The broker's own JWKS client."""
    async with make_jwks_client() as http:
        yield http


def cache(server: JwksServer, client: httpx.AsyncClient, clock: Clock,
          settings: JwksSettings = SETTINGS) -> JwksCache:  # fmt: skip
    return JwksCache(server.url, client, settings, clock)


async def test_rotation_is_accepted_after_exactly_one_refetch(
    server: JwksServer, keys: dict[str, SigningKey], client: httpx.AsyncClient
) -> None:
    """A new kid (after the cooldown) costs one fetch, then both keys are served from cache."""
    server.reset(keys["a"])
    clock = Clock()
    jwks = cache(server, client, clock)
    await jwks.key("key-a")
    assert server.state.fetches == 1
    server.state.keys.append(keys["b"])
    clock.now += 31
    await jwks.key("key-b")
    await jwks.key("key-a")
    await jwks.key("key-b")
    assert server.state.fetches == 2


async def test_a_flood_of_unknown_kids_costs_at_most_one_fetch(
    server: JwksServer, keys: dict[str, SigningKey], client: httpx.AsyncClient
) -> None:
    """500 concurrent random kids cause at most one fetch per cooldown, and all fail."""
    server.reset(keys["a"])
    clock = Clock()
    jwks = cache(server, client, clock)
    await jwks.key("key-a")
    clock.now += 31
    results = await asyncio.gather(*(jwks.key(f"random-{i}") for i in range(500)),
                                   return_exceptions=True)  # fmt: skip
    assert all(isinstance(r, KeyError) for r in results)
    assert server.state.fetches == 2
    more = await asyncio.gather(*(jwks.key(f"again-{i}") for i in range(500)),
                                return_exceptions=True)  # fmt: skip
    assert all(isinstance(r, KeyError) for r in more)
    assert server.state.fetches == 2


async def test_outage_keeps_the_last_keys_up_to_max_stale(
    server: JwksServer, keys: dict[str, SigningKey], client: httpx.AsyncClient
) -> None:
    """While the provider answers 500, the last good set serves until max_stale."""
    server.reset(keys["a"])
    clock = Clock()
    jwks = cache(server, client, clock)
    good = await jwks.key("key-a")
    server.state.status = 500
    clock.now += 700  # past the TTL: refetch fails, stale keys still serve
    assert await jwks.key("key-a") is good
    assert server.state.fetches == 2
    clock.now += 7000  # past max_stale
    with pytest.raises(JwksUnavailable):
        await jwks.key("key-a")


@pytest.mark.parametrize("knob", ["redirect", "oversize", "status"])
async def test_redirects_oversize_and_errors_are_refused(
    server: JwksServer, keys: dict[str, SigningKey], client: httpx.AsyncClient, knob: str
) -> None:
    """A redirect, a body over the cap or an error status yields no keys."""
    server.reset(keys["a"])
    setattr(server.state, knob, 404 if knob == "status" else True)
    jwks = cache(server, client, Clock())
    with pytest.raises(JwksUnavailable):
        await jwks.key("key-a")
    assert server.state.fetches == 1


@pytest.mark.parametrize(
    ("cache_control", "refetch_after"),
    [("max-age=120", 121), ("public, max-age=5", 61), ("max-age=999999", 3601), (None, 601)],
)
async def test_cache_control_is_honoured_within_bounds(
    server: JwksServer,
    keys: dict[str, SigningKey],
    client: httpx.AsyncClient,
    cache_control: str | None,
    refetch_after: float,
) -> None:
    """max-age sets the TTL, clamped to [min_ttl, max_ttl]; without it the default TTL."""
    server.reset(keys["a"])
    server.state.cache_control = cache_control
    clock = Clock()
    jwks = cache(server, client, clock)
    await jwks.key("key-a")
    clock.now += refetch_after - 2
    await jwks.key("key-a")
    assert server.state.fetches == 1
    clock.now += 2
    await jwks.key("key-a")
    assert server.state.fetches == 2


async def test_encryption_and_symmetric_keys_are_ignored(
    server: JwksServer, keys: dict[str, SigningKey], client: httpx.AsyncClient
) -> None:
    """Keys with use=enc and 'oct' keys in the set are never used for verification."""
    enc = SigningKey("key-enc", "RS256", keys["b"].private, use="enc")
    server.reset(keys["ec"], enc)
    server.state.extra = [{"kty": "oct", "kid": "key-oct", "k": "c2VjcmV0"}]
    jwks = cache(server, client, Clock())
    assert await jwks.key("key-ec") is not None
    for kid in ("key-enc", "key-oct"):
        with pytest.raises(KeyError):
            await jwks.key(kid)
