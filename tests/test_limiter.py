"""GCRA arithmetic (pure) and the Redis limiter against a real redis-server."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from servers import RedisServer
from tokenbroker.limits.gcra import Charge, Window, gcra, user_key
from tokenbroker.limits.headers import rate_limit_headers
from tokenbroker.limits.memory import MemoryLimiter
from tokenbroker.limits.redis import RedisLimiter
from tokenbroker.limits.rules import LimitRule, parse_duration

SECOND = 1_000_000


def rule(limit: int, per: str, burst: int | None = None) -> LimitRule:
    return LimitRule(limit, parse_duration(per), burst or limit, per)


class TestGcra:
    @pytest.mark.parametrize(
        ("tat", "now", "allowed", "new_tat", "remaining", "retry"),
        [
            # 5 per 5 s, burst 5: interval 1 s, capacity 5 s
            (None, 100 * SECOND, True, 101 * SECOND, 4, 0),
            (104 * SECOND, 100 * SECOND, True, 105 * SECOND, 0, 0),
            (105 * SECOND, 100 * SECOND, False, 105 * SECOND, 0, 1 * SECOND),
            (50 * SECOND, 100 * SECOND, True, 101 * SECOND, 4, 0),  # idle bucket is full
        ],
    )
    def test_charge_steps(
        self,
        tat: int | None,
        now: int,
        allowed: bool,
        new_tat: int,
        remaining: int,
        retry: int,
    ) -> None:
        """Admits up to the burst, then denies with the exact wait until one token is back."""
        assert gcra(tat, now, SECOND, 5) == (allowed, new_tat, remaining, retry)

    def test_refund_never_exceeds_capacity(self) -> None:
        """A refund moves the TAT back one interval but never before now."""
        assert gcra(103 * SECOND, 100 * SECOND, SECOND, 5, refund=True)[1] == 102 * SECOND
        assert gcra(100 * SECOND, 100 * SECOND, SECOND, 5, refund=True)[1] == 100 * SECOND

    @pytest.mark.parametrize(
        ("text", "seconds"), [("250ms", 0.25), ("10s", 10), ("1m", 60), ("1h", 3600), ("1d", 86400)]
    )
    def test_durations(self, text: str, seconds: float) -> None:
        """Durations read as the config and policy files write them."""
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize("text", ["", "5", "1w", "-1s", "0s", "s"])
    def test_bad_durations(self, text: str) -> None:
        """Anything else is refused."""
        with pytest.raises(ValueError, match="duration"):
            parse_duration(text)


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_server.url)
    yield connection
    await connection.aclose()


@pytest.fixture
def prefix() -> str:
    return f"lt{uuid.uuid4().hex[:8]}"


async def charge_n(limiter: RedisLimiter | MemoryLimiter, n: int, *rules: LimitRule) -> list[bool]:
    return [(await limiter.charge("alice", list(rules), [])).allowed for _ in range(n)]


class TestRedisLimiter:
    async def test_burst_then_deny(self, client: aioredis.Redis, prefix: str) -> None:
        """Exactly the burst passes, then every further charge is denied with a retry time."""
        limiter = RedisLimiter(client, prefix)
        assert await charge_n(limiter, 7, rule(5, "1m")) == [True] * 5 + [False] * 2
        denied = await limiter.charge("alice", [rule(5, "1m")], [])
        assert 11 * SECOND < denied.retry_after_us <= 12 * SECOND
        assert denied.retry_after_seconds == 12

    async def test_all_or_nothing(self, client: aioredis.Redis, prefix: str) -> None:
        """A denial by one window charges no other window and not the global budget."""
        limiter = RedisLimiter(client, prefix)
        tight, loose, budget = rule(1, "1m"), rule(100, "1m"), rule(100, "1m")
        first = await limiter.charge("alice", [tight, loose], [budget])
        assert first.allowed
        for _ in range(3):
            assert not (await limiter.charge("alice", [tight, loose], [budget])).allowed
        after = await limiter.charge("bob", [loose], [budget])
        assert [w.remaining for w in after.windows] == [99, 98]
        state = await limiter.peek("alice", [tight, loose])
        assert [w.remaining for w in state] == [0, 99]

    async def test_refund_once(self, client: aioredis.Redis, prefix: str) -> None:
        """A refund gives the token back exactly once."""
        limiter = RedisLimiter(client, prefix)
        limit = rule(2, "1m")
        charges = [await limiter.charge("alice", [limit], []) for _ in range(2)]
        assert not (await limiter.charge("alice", [limit], [])).allowed
        await limiter.refund(charges[0])
        await limiter.refund(charges[0])
        assert await charge_n(limiter, 2, limit) == [True, False]

    async def test_every_key_expires(self, client: aioredis.Redis, prefix: str) -> None:
        """After charges and refunds, no key of the limiter lacks a TTL."""
        limiter = RedisLimiter(client, prefix)
        for user in ("a", "b", "c"):
            charge = await limiter.charge(user, [rule(5, "1m"), rule(100, "1d")], [rule(50, "1s")])
            await limiter.refund(charge)
            await limiter.charge(user, [rule(5, "1m")], [rule(50, "1s")])
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        assert len(keys) == 4
        for key in keys:
            assert await client.pttl(key) > 0

    async def test_user_ids_cannot_choose_keys(self, client: aioredis.Redis, prefix: str) -> None:
        """User ids are hashed: braces or separators in an id do not reach the key name."""
        limiter = RedisLimiter(client, prefix)
        await limiter.charge("{global}:x", [rule(1, "1m")], [])
        keys = [key.decode() async for key in client.scan_iter(f"{prefix}:*")]
        assert len(keys) == 1
        assert "global" not in keys[0]

    async def test_batched_concurrent_charges_and_script_flush(
        self, client: aioredis.Redis, prefix: str
    ) -> None:
        """Concurrent charges (one script call together) each get their own exact answer,
        and a flushed script cache (as after a Redis restart) is reloaded transparently,
        for a batch and for a lone call."""
        limiter = RedisLimiter(client, prefix)
        one = rule(1, "1m")
        first = await asyncio.gather(*(limiter.charge(f"u{i % 25}", [one], []) for i in range(50)))
        assert sum(c.allowed for c in first) == 25
        await client.script_flush()
        again = await asyncio.gather(*(limiter.charge(f"v{i}", [one], []) for i in range(10)))
        assert all(c.allowed for c in again)
        await client.script_flush()
        assert (await limiter.charge("lone", [one], [])).allowed
        assert not (await limiter.charge("lone", [one], [])).allowed

    async def test_one_failing_charge_leaves_its_batch_alone(
        self, client: aioredis.Redis, prefix: str
    ) -> None:
        """A charge whose Redis command fails (a user's key of the wrong type) gets that
        error; the charges batched with it are answered as if it were not there."""
        limiter = RedisLimiter(client, prefix)
        two = rule(2, "1m")
        await client.set(user_key(prefix, "broken"), "not a hash")
        results = await asyncio.gather(
            *(limiter.charge(user, [two], [rule(100, "1m")]) for user in ("a", "broken", "a", "a")),
            return_exceptions=True,
        )
        assert isinstance(results[1], ResponseError)
        assert "WRONGTYPE" in str(results[1])
        assert [r.allowed for r in results if isinstance(r, Charge)] == [True, True, False]
        after = await limiter.charge("c", [two], [rule(100, "1m")])
        assert after.windows[1].remaining == 97  # a, a, c: the failed charge took nothing

    async def test_memory_limiter_agrees(self) -> None:
        """The in-process limiter admits the same sequence as the Redis one."""
        assert await charge_n(MemoryLimiter(), 7, rule(5, "1m")) == [True] * 5 + [False] * 2


def test_rate_limit_headers() -> None:
    """Structured-field RateLimit headers name every window and report the tightest."""
    limit = rule(5, "1m")

    charge = Charge(
        True,
        0,
        (Window("user", limit, 3, 24 * SECOND), Window("global", rule(50, "1s"), 49, 20_000)),
        ("u", (), ()),
    )
    assert rate_limit_headers(charge) == {
        "RateLimit-Policy": '"user-5-per-1m";q=5;w=60, "global-50-per-1s";q=50;w=1',
        "RateLimit": '"user-5-per-1m";r=3;t=24',
    }


class Clock:
    """Microseconds that a test moves by hand (the limiters take it instead of real time)."""

    def __init__(self, now: int = 1_700_000_000 * SECOND) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class TestTiming:
    """Time moved by hand on both limiters: the script takes ``now`` as an argument."""

    async def test_retry_after_is_exact_to_the_second(
        self, client: aioredis.Redis, prefix: str
    ) -> None:
        """A retry one second before Retry-After fails; at Retry-After it succeeds."""
        clock = Clock()
        limiter = RedisLimiter(client, prefix, clock=clock)
        one_per_2s = rule(1, "2s")
        assert (await limiter.charge("alice", [one_per_2s], [])).allowed
        clock.now += SECOND // 3
        denied = await limiter.charge("alice", [one_per_2s], [])
        assert not denied.allowed
        wait = denied.retry_after_seconds
        assert wait == 2
        clock.now += (wait - 1) * SECOND
        assert not (await limiter.charge("alice", [one_per_2s], [])).allowed
        clock.now += SECOND
        assert (await limiter.charge("alice", [one_per_2s], [])).allowed

    async def test_full_recovery_after_one_period(
        self, client: aioredis.Redis, prefix: str
    ) -> None:
        """After one full period of quiet, the whole burst is available again."""
        clock = Clock()
        limiter = RedisLimiter(client, prefix, clock=clock)
        three_per_2s = rule(3, "2s")
        assert await charge_n(limiter, 4, three_per_2s) == [True, True, True, False]
        clock.now += 2 * SECOND - 3  # a few µs short of a full bucket: one token less
        assert await charge_n(limiter, 3, three_per_2s) == [True, True, False]
        clock.now += 2 * SECOND
        assert await charge_n(limiter, 4, three_per_2s) == [True, True, True, False]

    async def test_the_servers_clock_without_an_injected_one(
        self, client: aioredis.Redis, prefix: str
    ) -> None:
        """Without a clock the script reads Redis's TIME: a fresh bucket's reset is one
        interval from the server's now."""
        charge = await RedisLimiter(client, prefix).charge("alice", [rule(1, "1h")], [])
        seconds, micros = await client.time()
        assert charge.allowed and 3599 * SECOND < charge.windows[0].reset_us <= 3600 * SECOND
        assert seconds > 1_600_000_000 and micros >= 0


def sequence(seed: int) -> tuple[list[LimitRule], list[LimitRule], list[tuple[str, int]]]:
    """A generated case: user and global windows, then steps (charge or refund, after a pause)."""
    rng = random.Random(seed)  # noqa: S311  # a reproducible table, not a secret
    pers = ["1s", "2s", "10s", "1m", "1h"]

    def rules(n: int) -> list[LimitRule]:
        return [rule(rng.randint(1, 20), rng.choice(pers), rng.choice([None, rng.randint(1, 30)]))
                for _ in range(n)]  # fmt: skip

    steps = [(rng.choice(["charge"] * 4 + ["refund"]), rng.choice([0, 1, 999, SECOND // 7,
             SECOND, 3 * SECOND, 61 * SECOND])) for _ in range(40)]  # fmt: skip
    return rules(rng.randint(1, 3)), rules(rng.randint(0, 2)), steps


@pytest.mark.parametrize("seed", range(60))
async def test_lua_and_python_gcra_agree(client: aioredis.Redis, prefix: str, seed: int) -> None:
    """Over a generated table of sequences (charges, refunds and pauses on several windows),
    gcra.lua in Redis and the Python arithmetic give the same decision, retry time and
    per-window state at every step."""
    user_rules, global_rules, steps = sequence(seed)
    clock = Clock()
    in_redis = RedisLimiter(client, prefix, clock=clock)
    in_process = MemoryLimiter(clock=clock)
    admitted: list[tuple[Charge, Charge]] = []
    for op, pause in steps:
        clock.now += pause
        if op == "refund" and admitted:
            charges = admitted.pop(seed % len(admitted))
            await in_redis.refund(charges[0])
            await in_process.refund(charges[1])
            continue
        one = await in_redis.charge("u", user_rules, global_rules)
        two = await in_process.charge("u", user_rules, global_rules)
        assert (one.allowed, one.retry_after_us) == (two.allowed, two.retry_after_us)
        assert one.windows == two.windows
        if one.allowed:
            admitted.append((one, two))
